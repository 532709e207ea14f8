/**
 * The extension's own logic, kept apart from VS Code so that it runs (and is unit-tested) on plain node: how the
 * server is launched, which settings it is sent, which documents it gets, and the words the user reads (status bar,
 * command results, broken set-ups). This module must not import `vscode`.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** The server's commands (workspace/executeCommand). The extension registers a VS Code command under each id. */
export const COMMANDS = {
  learnWorkspace: 'nextword.learnWorkspace',
  retrainNeural: 'nextword.retrainNeural',
  forgetDocument: 'nextword.forgetDocument',
  pauseLearning: 'nextword.pauseLearning',
  resumeLearning: 'nextword.resumeLearning',
  statistics: 'nextword.statistics',
  ignoreWord: 'nextword.ignoreWord',
} as const;

const TITLES: Record<string, string> = {
  [COMMANDS.learnWorkspace]: 'Learn Workspace',
  [COMMANDS.retrainNeural]: 'Retrain the Neural Model',
  [COMMANDS.forgetDocument]: 'Forget This Document',
  [COMMANDS.pauseLearning]: 'Pause Learning',
  [COMMANDS.resumeLearning]: 'Resume Learning',
  [COMMANDS.statistics]: 'Statistics',
  [COMMANDS.ignoreWord]: 'Ignore Word',
};

/** The server's settings, under "nextword." in VS Code and camelCase as the server reads them. */
export const SERVER_SETTINGS = [
  'languages',
  'comments',
  'maxSuggestions',
  'oddityThreshold',
  'oddityKinds',
  'perplexityDiagnostic',
  'learning',
  'learnOnChange',
  'inlineCompletion',
  'inlineMaxWords',
  'debounceMs',
  'maxDocumentChars',
  'cacheMegabytes',
  'ignoredWords',
  'excludeGlobs',
  'blendWeight',
  'adaptation',
] as const;

/** Settings whose change needs a new server: how it is started, its store, the documents it is given. */
export const RESTART_SETTINGS = ['server.command', 'server.args', 'databasePath', 'languages', 'comments'];

/** Languages whose comments the server reads with the `comments` setting (lsp_server/comments.py). */
export const COMMENT_LANGUAGES = [
  'python', 'shellscript', 'sh', 'bash', 'ruby', 'perl', 'r', 'yaml', 'toml', 'dockerfile', 'makefile', 'cmake',
  'elixir', 'julia', 'nim', 'powershell', 'c', 'cpp', 'csharp', 'java', 'javascript', 'javascriptreact',
  'typescript', 'typescriptreact', 'go', 'rust', 'swift', 'kotlin', 'scala', 'dart', 'php', 'css', 'scss', 'less',
  'zig', 'groovy', 'objective-c', 'lua', 'sql', 'haskell', 'elm', 'ada', 'erlang', 'matlab', 'tex',
];

/** What the extension reads settings through: `vscode.WorkspaceConfiguration` for section "nextword", or a fake. */
export interface Settings {
  get<T>(key: string): T | undefined;
}

export interface Launch {
  command: string;
  args: string[];
}

/** The server's perplexity notification (`nextword/perplexity`). */
export interface Perplexity {
  uri: string;
  perplexity: number | null;
  tokens: number;
}

/** How the server process ended: exit code or signal, and the end of what it wrote to stderr. */
export interface ServerExit {
  code: number | null;
  signal: string | null;
  stderr: string;
}

/** The command line that starts the server: `nextword.server.command` (`~` and `${workspaceFolder}` expanded) and
 * `nextword.server.args`. */
export function serverLaunch(settings: Settings, workspaceFolder?: string): Launch {
  const command = expandPath(settings.get<string>('server.command') ?? '', workspaceFolder) || 'nextword';
  const args = settings.get<string[]>('server.args');
  return { command, args: Array.isArray(args) ? args.map(String) : ['serve'] };
}

/** `~` and `${workspaceFolder}` expanded; other text as it is. */
export function expandPath(value: string, workspaceFolder?: string): string {
  let out = value.trim();
  if (workspaceFolder !== undefined) {
    out = out.split('${workspaceFolder}').join(workspaceFolder);
  }
  if (out === '~' || out.startsWith('~/') || out.startsWith('~\\')) {
    out = path.join(os.homedir(), out.slice(1));
  }
  return out;
}

/** The settings object the server reads (initializationOptions and didChangeConfiguration, under "nextword").
 * An empty `databasePath` (or `neuralModel`) is left out, so the server keeps its default store (or a `--db` among the
 * arguments) and its default neural model (`default`: the retrained or the shipped one; `none` turns it off). */
export function serverSettings(settings: Settings, workspaceFolder?: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const key of SERVER_SETTINGS) {
    const value = settings.get<unknown>(key);
    if (value !== undefined && value !== null) {
      out[key] = value;
    }
  }
  const database = settings.get<string>('databasePath');
  if (typeof database === 'string' && database.trim()) {
    out.databasePath = expandPath(database, workspaceFolder);
  }
  const neural = settings.get<string>('neuralModel');
  if (typeof neural === 'string' && neural.trim()) {
    out.neuralModel = expandPath(neural, workspaceFolder);
  }
  return out;
}

/** The documents the server is given: the prose languages, and code files too when `comments` is on. */
export function documentSelector(settings: Settings): { scheme: string; language: string }[] {
  const languages = [...(settings.get<string[]>('languages') ?? [])];
  if (settings.get<boolean>('comments')) {
    languages.push(...COMMENT_LANGUAGES.filter((language) => !languages.includes(language)));
  }
  return languages.flatMap((language) => [
    { scheme: 'file', language },
    { scheme: 'untitled', language },
  ]);
}

/** Whether a configuration change touches a setting in `keys` (`affects` is `ConfigurationChangeEvent`'s test). */
export function changed(affects: (section: string) => boolean, keys: readonly string[]): boolean {
  return keys.some((key) => affects(`nextword.${key}`));
}

/** The executable `command` names (a path, or a name looked up on PATH), or undefined when there is none. */
export function findExecutable(
  command: string,
  env: NodeJS.ProcessEnv = process.env,
  platform: NodeJS.Platform = process.platform,
): string | undefined {
  const windows = platform === 'win32';
  const extensions = windows ? ['', ...(env.PATHEXT ?? '.EXE;.CMD;.BAT;.COM').split(';').filter(Boolean)] : [''];
  const runnable = (file: string): boolean => {
    try {
      if (!fs.statSync(file).isFile()) {
        return false;
      }
      fs.accessSync(file, windows ? fs.constants.F_OK : fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  const expanded = expandPath(command);
  const candidates = (base: string): string[] => extensions.map((extension) => base + extension);
  if (expanded.includes('/') || (windows && expanded.includes('\\'))) {
    return candidates(path.resolve(expanded)).find(runnable);
  }
  const key = Object.keys(env).find((name) => name.toUpperCase() === 'PATH') ?? 'PATH';
  const folders = (env[key] ?? '').split(windows ? ';' : ':').filter(Boolean);
  for (const folder of folders) {
    const found = candidates(path.join(folder, expanded)).find(runnable);
    if (found !== undefined) {
      return found;
    }
  }
  return undefined;
}

export function notFoundMessage(command: string): string {
  return (
    `nextword: the server command "${command}" was not found. Install nextword (pip install nextword) ` +
    'or set "nextword.server.command" to the full path of its executable, for example .venv/bin/nextword.'
  );
}

export function spawnFailedMessage(command: string, error: Error): string {
  if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
    return notFoundMessage(command);
  }
  return `nextword: the server command "${command}" could not be started (${error.message}); see "nextword.server.command".`;
}

/** What the user reads when the server stopped on its own. */
export function exitMessage(exit: ServerExit | undefined, restarting: boolean): string {
  const how =
    exit === undefined
      ? 'stopped'
      : exit.signal
        ? `was killed (${exit.signal})`
        : `exited with code ${exit.code ?? '?'}`;
  const lines = (exit?.stderr ?? '').split(/\r?\n/).map((line) => line.trim()).filter(Boolean);
  const reason = lines.length ? `: ${lines[lines.length - 1]}` : '';
  const next = restarting
    ? ' Restarting it.'
    : ' It will not be restarted; fix the cause and run "nextword: Restart Server" (details in Output › nextword).';
  return `nextword: the server ${how}${reason}.${next}`;
}

/** Start the server process. Resolves once it runs, with `exited` (how it ended, when it has); rejects with a
 * message for the user when it cannot be started. */
export function spawnServer(
  command: string,
  args: string[],
  cwd?: string,
): Promise<{ child: ChildProcess; exited: Promise<ServerExit> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: 'pipe' });
    const stderr = new Tail();
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    const exited = new Promise<ServerExit>((done) =>
      child.on('exit', (code, signal) => done({ code, signal, stderr: `${stderr}` })),
    );
    child.once('error', (error) => reject(new Error(spawnFailedMessage(command, error))));
    child.once('spawn', () => resolve({ child, exited }));
  });
}

/** `promise`'s value, or undefined when it has not settled within `ms` milliseconds. */
export function within<T>(promise: Promise<T> | undefined, ms: number): Promise<T | undefined> {
  return Promise.race([promise, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), ms))]);
}

/** The last `limit` characters written to a stream, for the exit message. */
export class Tail {
  private text = '';

  constructor(private readonly limit = 2000) {}

  push(chunk: string | Buffer): void {
    this.text = (this.text + chunk.toString()).slice(-this.limit);
  }

  toString(): string {
    return this.text;
  }
}

/** Restart a crashed server at most `max` times within `windowMs`. */
export class CrashPolicy {
  private readonly crashes: number[] = [];

  constructor(
    private readonly max = 3,
    private readonly windowMs = 3 * 60 * 1000,
  ) {}

  /** Record a crash at `now`; true when the server should be restarted. */
  shouldRestart(now: number): boolean {
    this.crashes.push(now);
    while (this.crashes.length && now - this.crashes[0] > this.windowMs) {
      this.crashes.shift();
    }
    return this.crashes.length <= this.max;
  }
}

/** The status bar item for the active document: its perplexity, and whether learning is paused. */
export function statusBar(
  info: Perplexity | undefined,
  learning: boolean,
): { text: string; tooltip: string } {
  const value = info?.perplexity ?? null;
  const shown = value === null ? '–' : value >= 1000 ? Math.round(value).toString() : value.toFixed(1);
  const icon = learning ? '$(symbol-text)' : '$(debug-pause)';
  const about =
    info === undefined
      ? 'nextword has not checked this document yet.'
      : value === null
        ? 'nextword found no words to score in this document.'
        : `Perplexity ${value} over ${info.tokens} tokens: how surprised the model is by this text, per word (lower reads more predictably).`;
  const state = learning ? 'Learning on save.' : 'Learning is paused.';
  return { text: `${icon} PPL ${shown}`, tooltip: `${about}\n${state}\nClick for statistics.` };
}

function count(value: unknown): string {
  return typeof value === 'number' ? value.toLocaleString('en-US') : String(value ?? '?');
}

/** A line about the store from the `nextword.statistics` result. */
export function describeStatistics(stats: Record<string, unknown>): string {
  const ngrams = (stats.ngrams ?? {}) as Record<string, unknown>;
  const orders = Object.keys(ngrams)
    .sort((a, b) => Number(a) - Number(b))
    .map((n) => `${n}-grams ${count(ngrams[n])}`)
    .join(', ');
  const ignored = Array.isArray(stats.ignored) && stats.ignored.length ? `; ignoring ${stats.ignored.join(', ')}` : '';
  return (
    `nextword: ${count(stats.tokens)} tokens from ${count(stats.sources)} source${stats.sources === 1 ? '' : 's'}, ` +
    `${count(stats.vocabulary)} words; ${orders}; ${stats.smoothing ?? '?'} order ${stats.model_order ?? '?'}; ` +
    `learning ${stats.learning === false ? 'paused' : 'on'}${ignored}. Store: ${stats.path ?? '?'}`
  );
}

/** What to tell the user after a command succeeded (undefined: nothing). */
export function describeResult(command: string, result: unknown): string | undefined {
  const value = (result ?? {}) as Record<string, unknown>;
  switch (command) {
    case COMMANDS.learnWorkspace:
      return (
        `nextword learned ${count(value.learned)} of ${count(value.files)} text file${value.files === 1 ? '' : 's'}` +
        (value.skipped ? ` (${count(value.skipped)} skipped)` : '') +
        (value.cancelled ? '; cancelled.' : '.') +
        (value.files === 0 ? ' Open a folder with .md, .txt, .rst or .tex files first.' : '')
      );
    case COMMANDS.forgetDocument:
      return value.forgotten ? 'nextword forgot this document.' : 'nextword had not learned this document.';
    case COMMANDS.pauseLearning:
      return 'nextword: learning paused.';
    case COMMANDS.resumeLearning:
      return 'nextword: learning resumed.';
    case COMMANDS.statistics:
      return describeStatistics(value);
    case COMMANDS.retrainNeural:
      return 'nextword: the neural model was retrained.';
    default:
      return undefined;
  }
}

/** What to tell the user when the server answered a command with an error. `offered` lists the server's commands. */
export function describeError(command: string, message: string, offered?: readonly string[]): string {
  const title = TITLES[command] ?? command;
  if (offered !== undefined && !offered.includes(command)) {
    return `nextword: "${title}" is not available from this server yet (${message}).`;
  }
  return `nextword: "${title}" failed: ${message}`;
}
