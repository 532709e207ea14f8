// The server as the extension drives it, through the protocol libraries under vscode-languageclient
// (vscode-languageserver-protocol over vscode-jsonrpc/node): launched from the extension's settings (src/core.ts),
// initialized with VS Code's recorded capabilities and the settings object the extension sends, then a Markdown
// document is opened, completed and checked. The Python comes from $NEXTWORD_PYTHON or the repository's .venv.
import * as assert from 'node:assert/strict';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import {
  CompletionList,
  CompletionRequest,
  createProtocolConnection,
  Diagnostic,
  DidOpenTextDocumentNotification,
  ExecuteCommandRequest,
  ExitNotification,
  InitializedNotification,
  InitializeRequest,
  InitializeResult,
  InlineCompletionList,
  InlineCompletionRequest,
  ProtocolConnection,
  PublishDiagnosticsNotification,
  PublishDiagnosticsParams,
  ShowMessageNotification,
  ShowMessageParams,
  ShutdownRequest,
  WorkDoneProgressCreateRequest,
} from 'vscode-languageserver-protocol';
import * as core from '../src/core';

const ROOT = path.resolve(__dirname, '..', '..');
const REPO = path.resolve(ROOT, '..', '..');
const PYTHON = process.env.NEXTWORD_PYTHON || path.join(REPO, '.venv', 'bin', 'python');
const VSCODE = JSON.parse(fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'vscode-1.93.1-capabilities.json'), 'utf8'));
const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const properties: Record<string, { default: unknown }> = manifest.contributes.configuration.properties;

const CORPUS = `The cat sat on the mat. The cat sat on the mat again.
The dog sat on the mat too. The cat sat on the mat and the dog sat on the rug.
There is a problem with the plan. There is a problem here. There is a cat on the mat.
There is a dog in the house. There is a plan. There is a problem with it.
I have a dog. I have a cat. I have a big house.
It is better than nothing. It is better than before. It is better than the old one.
Their house is big. Their house is red. Their dog is big.
I saw the cat on the mat. I saw the dog on the rug. I saw the cat. I saw the dog. I saw the cat again.
`;
const TEXT = 'Their is a problem.\n\nThe cat sat on the ';

/** The extension's settings: package.json's defaults under `values`. */
function settings(values: Record<string, unknown>): core.Settings {
  return {
    get<T>(key: string): T | undefined {
      return (key in values ? values[key] : properties[`nextword.${key}`]?.default) as T | undefined;
    },
  };
}

/** Resolves with the first value `check` returns that is not undefined, polling every 20 ms. */
async function eventually<T>(what: string, check: () => T | undefined, timeoutMs = 15000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > end) {
      throw new Error(`timed out waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

interface Server {
  process: ChildProcess;
  connection: ProtocolConnection;
  initialized: InitializeResult;
  diagnostics: PublishDiagnosticsParams[];
  perplexities: core.Perplexity[];
  messages: ShowMessageParams[];
}

/** The server started as the extension starts it: its launch settings, looked up with findExecutable. */
async function startServer(home: string, db: string): Promise<Server> {
  const launch = core.serverLaunch(
    settings({ 'server.command': PYTHON, 'server.args': ['-m', 'lsp_server.cli', 'serve', '--db', db] }),
  );
  const executable = core.findExecutable(launch.command);
  assert.ok(executable, core.notFoundMessage(launch.command));
  const env = { ...process.env, XDG_DATA_HOME: home, NEXTWORD_DB: path.join(home, 'unused.db') };
  const child = spawn(executable, launch.args, { cwd: home, env, stdio: ['pipe', 'pipe', 'inherit'] });
  const connection = createProtocolConnection(
    new StreamMessageReader(child.stdout!),
    new StreamMessageWriter(child.stdin!),
  );
  const server: Omit<Server, 'initialized'> = { process: child, connection, diagnostics: [], perplexities: [], messages: [] };
  connection.onNotification(PublishDiagnosticsNotification.type, (params) => {
    server.diagnostics.push(params);
  });
  connection.onNotification('nextword/perplexity', (params: core.Perplexity) => {
    server.perplexities.push(params);
  });
  connection.onNotification(ShowMessageNotification.type, (params) => {
    server.messages.push(params);
  });
  connection.onRequest(WorkDoneProgressCreateRequest.type, () => undefined);
  connection.listen();
  const initialized = await connection.sendRequest(InitializeRequest.type, {
    processId: process.pid,
    clientInfo: VSCODE.clientInfo,
    capabilities: VSCODE.capabilities,
    rootUri: null,
    workspaceFolders: null,
    // adaptation off: the expected ranking is the store's own model's
    initializationOptions: { nextword: { ...core.serverSettings(settings({})), debounceMs: 0, adaptation: false } },
  });
  await connection.sendNotification(InitializedNotification.type, {});
  return { ...server, initialized };
}

async function stopServer(server: Server): Promise<void> {
  const exited = new Promise((resolve) => server.process.once('exit', resolve));
  await server.connection.sendRequest(ShutdownRequest.type);
  await server.connection.sendNotification(ExitNotification.type);
  await exited;
  server.connection.dispose();
}

function open(server: Server, uri: string, text: string): Promise<void> {
  return server.connection.sendNotification(DidOpenTextDocumentNotification.type, {
    textDocument: { uri, languageId: 'markdown', version: 1, text },
  });
}

describe('the server, as the VS Code extension drives it', { timeout: 120000 }, () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'nextword-vscode-e2e-'));
  const db = path.join(home, 'store.db');
  const uri = pathToFileURL(path.join(home, 'notes.md')).toString();
  let server: Server;

  before(async () => {
    fs.writeFileSync(path.join(home, 'corpus.txt'), CORPUS);
    execFileSync(PYTHON, ['-m', 'lsp_server.cli', 'build', '--db', db, '--order', '3', 'corpus.txt'], {
      cwd: home,
      stdio: 'pipe',
    });
    server = await startServer(home, db);
    await open(server, uri, TEXT);
  });

  after(async () => {
    await stopServer(server);
    fs.rmSync(home, { recursive: true, force: true });
  });

  test('initializes with VS Code capabilities, accepts the extension settings and offers its commands', () => {
    const capabilities = server.initialized.capabilities;
    assert.deepEqual(capabilities.completionProvider?.triggerCharacters, [' ']);
    assert.ok(capabilities.inlineCompletionProvider, 'inline completion (ghost text)');
    const offered = capabilities.executeCommandProvider?.commands ?? [];
    const missing = Object.values(core.COMMANDS).filter((c) => !offered.includes(c));
    // retrainNeural comes with the neural model; until then the server does not offer it.
    assert.deepEqual(missing.filter((c) => c !== core.COMMANDS.retrainNeural), []);
  });

  test('completes the next word, ranked', async () => {
    const result = (await server.connection.sendRequest(CompletionRequest.type, {
      textDocument: { uri },
      position: { line: 2, character: 19 },
    })) as CompletionList;
    assert.equal(result.isIncomplete, true);
    const labels = result.items.map((item) => item.label);
    assert.equal(labels.length, 10);
    assert.deepEqual(labels.slice(0, 5), ['mat', 'rug', 'cat', 'dog', 'the']);
    assert.deepEqual(new Set(labels.slice(5)), new Set(['house', 'plan', 'old', 'is', 'on']));
    assert.deepEqual(
      result.items.map((item) => item.sortText),
      labels.map((_, rank) => rank.toString().padStart(4, '0')),
    );
    const [first] = result.items;
    assert.equal(first.detail, 'P = 0.3951');
    assert.deepEqual(first.textEdit, {
      range: { start: { line: 2, character: 19 }, end: { line: 2, character: 19 } },
      newText: 'mat',
    });
  });

  test('offers ghost text where VS Code 1.91+ asks for it (inline completion)', async () => {
    assert.deepEqual(VSCODE.capabilities.textDocument.inlineCompletion, { dynamicRegistration: true });
    const result = (await server.connection.sendRequest(InlineCompletionRequest.type, {
      textDocument: { uri },
      position: { line: 2, character: 19 },
      context: { triggerKind: 2 }, // automatic
    })) as InlineCompletionList;
    assert.equal(result.items.length, 1);
    const [ghost] = result.items;
    assert.equal(typeof ghost.insertText, 'string');
    assert.equal(ghost.insertText, 'rug.'); // the likeliest continuation (beam search), not always the likeliest word
    assert.deepEqual(ghost.range, { start: { line: 2, character: 19 }, end: { line: 2, character: 19 } });
  });

  test('diagnoses the planted oddity and reports the perplexity for the status bar', async () => {
    const published = await eventually('diagnostics', () =>
      server.diagnostics.find((d) => d.uri === uri && d.diagnostics.some((x) => x.code === 'odd-word')),
    );
    const odd = published.diagnostics.filter((d: Diagnostic) => d.code === 'odd-word');
    assert.equal(odd.length, 1);
    assert.deepEqual(odd[0].range, { start: { line: 0, character: 0 }, end: { line: 0, character: 5 } });
    assert.equal(odd[0].source, 'nextword');
    assert.equal(odd[0].message, "'Their' reads oddly here; likelier: 'There'");
    assert.deepEqual((odd[0].data as { alternatives: string[] }).alternatives, ['There']);
    const perplexity = published.diagnostics.find((d: Diagnostic) => d.code === 'perplexity');
    assert.equal(perplexity?.message, 'Perplexity 12.6 over 12 tokens');

    const info = await eventually('nextword/perplexity', () => server.perplexities.find((p) => p.uri === uri));
    assert.equal(info.tokens, 12);
    assert.equal(info.perplexity, 12.63);
    assert.equal(core.statusBar(info, true).text, '$(symbol-text) PPL 12.6');
  });

  test('commands: statistics, pause, and the neural model that is not there yet', async () => {
    const exec = (command: string) => server.connection.sendRequest(ExecuteCommandRequest.type, { command, arguments: [] });
    await exec(core.COMMANDS.pauseLearning);
    const stats = (await exec(core.COMMANDS.statistics)) as Record<string, unknown>;
    assert.equal(stats.learning, false);
    assert.match(
      core.describeResult(core.COMMANDS.statistics, stats) ?? '',
      /^nextword: \d+ tokens from 1 source, \d+ words; 1-grams \d+, 2-grams \d+, 3-grams \d+; kneser-ney order 3; learning paused\. Store: /,
    );
    const offered = server.initialized.capabilities.executeCommandProvider?.commands;
    if (offered?.includes(core.COMMANDS.retrainNeural)) {
      return; // the server has a neural model now: nothing to show as "not available"
    }
    await assert.rejects(exec(core.COMMANDS.retrainNeural), (error: Error) => {
      assert.match(
        core.describeError(core.COMMANDS.retrainNeural, error.message, offered),
        /^nextword: "Retrain the Neural Model" is not available from this server yet \(.*nextword\.retrainNeural.*\)\.$/,
      );
      return true;
    });
  });

  test('the settings the extension sends raised no complaint', () => {
    assert.deepEqual(server.messages, []);
  });
});

describe('a store the server cannot open', { timeout: 60000 }, () => {
  test('is reported with window/showMessage, which the client shows as an error', async () => {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'nextword-vscode-baddb-'));
    const db = path.join(home, 'not-a-store.db');
    fs.writeFileSync(db, 'this is not an SQLite file, it is only text '.repeat(200));
    const server = await startServer(home, db);
    try {
      const message = await eventually('window/showMessage', () => server.messages[0]);
      assert.equal(message.type, 1);
      assert.match(String(message.message), /^nextword cannot open its store: /);
    } finally {
      await stopServer(server);
      fs.rmSync(home, { recursive: true, force: true });
    }
  });
});
