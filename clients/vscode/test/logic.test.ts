// Unit tests of the extension's own logic (src/core.ts), on plain node: no VS Code instance.
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import * as core from '../src/core';

const ROOT = path.resolve(__dirname, '..', '..');
const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const properties: Record<string, { default: unknown }> = manifest.contributes.configuration.properties;

/** Settings as VS Code reads them: the user's values over package.json's defaults. */
function settings(values: Record<string, unknown> = {}): core.Settings {
  return {
    get<T>(key: string): T | undefined {
      return (key in values ? values[key] : properties[`nextword.${key}`]?.default) as T | undefined;
    },
  };
}

describe('package.json', () => {
  test('declares every server setting, and the client settings, and nothing else', () => {
    const declared = Object.keys(properties).map((key) => key.replace(/^nextword\./, ''));
    const client = ['server.command', 'server.args', 'databasePath', 'neuralModel', 'trace.server']; // paths: expanded
    assert.deepEqual(new Set(declared), new Set([...core.SERVER_SETTINGS, ...client]));
  });

  test('contributes a palette command for every server command, plus restart and output', () => {
    const ids = manifest.contributes.commands.map((c: { command: string }) => c.command);
    assert.deepEqual(ids.sort(), [...Object.values(core.COMMANDS), 'nextword.restartServer', 'nextword.showOutput'].sort());
    for (const c of manifest.contributes.commands) {
      assert.equal(c.category, 'nextword');
    }
  });

  test('activates for every language its settings can enable and packages the compiled extension', () => {
    const languages = [...new Set([...(properties['nextword.languages'].default as string[]), ...core.COMMENT_LANGUAGES])];
    const onLanguage = languages.map((language) => `onLanguage:${language}`);
    assert.deepEqual(manifest.activationEvents, [...onLanguage, 'onStartupFinished']); // other `languages`: at start-up
    assert.equal(manifest.main, './out/src/extension.js');
    assert.equal(manifest.dependencies['vscode-languageclient'], '10.1.2');
  });
});

describe('launching the server', () => {
  test('defaults to `nextword serve`', () => {
    assert.deepEqual(core.serverLaunch(settings()), { command: 'nextword', args: ['serve'] });
  });

  test('takes the command and arguments from the settings', () => {
    const launch = core.serverLaunch(
      settings({ 'server.command': ' /opt/nw/bin/python ', 'server.args': ['-m', 'lsp_server.cli', 'serve'] }),
    );
    assert.deepEqual(launch, { command: '/opt/nw/bin/python', args: ['-m', 'lsp_server.cli', 'serve'] });
    assert.equal(core.serverLaunch(settings({ 'server.command': '  ' })).command, 'nextword');
    const inFolder = settings({ 'server.command': '${workspaceFolder}/.venv/bin/nextword' });
    assert.equal(core.serverLaunch(inFolder, '/w/notes').command, '/w/notes/.venv/bin/nextword');
    const home = core.serverLaunch(settings({ 'server.command': '~/nw/bin/nextword' })).command;
    assert.equal(home, path.join(os.homedir(), 'nw/bin/nextword'));
  });

  test('finds executables on PATH and by path, never plain files or folders', () => {
    const folder = fs.mkdtempSync(path.join(os.tmpdir(), 'nextword-logic-'));
    const program = path.join(folder, 'nextword');
    fs.writeFileSync(program, '#!/bin/sh\n', { mode: 0o755 });
    fs.writeFileSync(path.join(folder, 'notes'), 'text', { mode: 0o644 });
    fs.mkdirSync(path.join(folder, 'dir'));
    const env = { PATH: ['/nonexistent', folder].join(':') };
    assert.equal(core.findExecutable('nextword', env, 'linux'), program);
    assert.equal(core.findExecutable(program, {}, 'linux'), program);
    assert.equal(core.findExecutable('notes', env, 'linux'), undefined);
    assert.equal(core.findExecutable('dir', env, 'linux'), undefined);
    assert.equal(core.findExecutable('nextword-missing', env, 'linux'), undefined);
    assert.equal(core.findExecutable(path.join(folder, 'missing'), env, 'linux'), undefined);
  });

  test('spawning: how the process ended, with the end of its stderr; a missing command is a clear error', async () => {
    const script = "process.stderr.write('starting\\nnextword: error: cannot open the store\\n'); process.exit(3)";
    const server = await core.spawnServer(process.execPath, ['-e', script]);
    assert.equal(typeof server.child.pid, 'number');
    const exit = await server.exited;
    assert.deepEqual(exit, { code: 3, signal: null, stderr: 'starting\nnextword: error: cannot open the store\n' });
    assert.equal(
      core.exitMessage(exit, false).split('. ')[0],
      'nextword: the server exited with code 3: nextword: error: cannot open the store',
    );
    await assert.rejects(core.spawnServer('/nonexistent/nextword', ['serve']), {
      message: core.notFoundMessage('/nonexistent/nextword'),
    });
  });

  test('within: a value in time, or undefined', async () => {
    assert.equal(await core.within(Promise.resolve(7), 1000), 7);
    assert.equal(await core.within(new Promise(() => undefined), 10), undefined);
    assert.equal(await core.within(undefined, 10), undefined);
  });

  test('a missing command gets a message naming it and the setting to change', () => {
    const message = core.notFoundMessage('nextwrd');
    assert.match(message, /"nextwrd" was not found/);
    assert.match(message, /"nextword\.server\.command"/);
    const enoent = Object.assign(new Error('spawn nextwrd ENOENT'), { code: 'ENOENT' });
    assert.equal(core.spawnFailedMessage('nextwrd', enoent), message);
    const eacces = Object.assign(new Error('spawn /x EACCES'), { code: 'EACCES' });
    assert.match(core.spawnFailedMessage('/x', eacces), /"\/x" could not be started \(spawn \/x EACCES\)/);
  });
});

describe('settings sent to the server', () => {
  test('the defaults, camelCase, without an empty database path', () => {
    assert.deepEqual(core.serverSettings(settings()), {
      languages: ['plaintext', 'markdown', 'git-commit', 'restructuredtext', 'latex'],
      comments: false,
      maxSuggestions: 10,
      oddityThreshold: 10,
      oddityKinds: ['confusion', 'doubled', 'article', 'preposition', 'inflection', 'transposition', 'missing word',
        'spelling', 'misspelling'],
      perplexityDiagnostic: true,
      learning: true,
      learnOnChange: false,
      inlineCompletion: true,
      inlineMaxWords: 6,
      debounceMs: 400,
      maxDocumentChars: 2000000,
      cacheMegabytes: 64,
      ignoredWords: [],
      excludeGlobs: [],
      adaptation: true,
      neuralModel: 'default',
    });
  });

  test('the neural model: default, none, or a checkpoint path with ~ expanded', () => {
    assert.equal(core.serverSettings(settings({ neuralModel: 'none' })).neuralModel, 'none');
    assert.equal(core.serverSettings(settings({ neuralModel: '  ' })).neuralModel, undefined); // the server's default
    const home = os.homedir();
    assert.equal(core.serverSettings(settings({ neuralModel: '~/m.pt' })).neuralModel, path.join(home, 'm.pt'));
  });

  test('the database path, with ~ and ${workspaceFolder} expanded', () => {
    const home = os.homedir();
    assert.equal(core.serverSettings(settings({ databasePath: '~/nw.db' })).databasePath, path.join(home, 'nw.db'));
    const inFolder = core.serverSettings(settings({ databasePath: '${workspaceFolder}/.nw.db' }), '/w/notes');
    assert.equal(inFolder.databasePath, '/w/notes/.nw.db');
    assert.equal(core.serverSettings(settings({ databasePath: '/abs/x.db' })).databasePath, '/abs/x.db');
  });

  test('changes that need a restart are told apart from the ones sent live', () => {
    const affects = (changed: string) => (section: string) => changed.startsWith(section);
    assert.ok(core.changed(affects('nextword.server.command'), core.RESTART_SETTINGS));
    assert.ok(core.changed(affects('nextword.databasePath'), core.RESTART_SETTINGS));
    assert.ok(!core.changed(affects('nextword.maxSuggestions'), core.RESTART_SETTINGS));
    assert.ok(core.changed(affects('nextword.maxSuggestions'), core.SERVER_SETTINGS));
    assert.ok(!core.changed(affects('editor.fontSize'), [...core.SERVER_SETTINGS, ...core.RESTART_SETTINGS]));
  });

  test('the document selector: the prose languages, code files too with comments on', () => {
    const prose = core.documentSelector(settings({ languages: ['markdown'] }));
    assert.deepEqual(prose, [
      { scheme: 'file', language: 'markdown' },
      { scheme: 'untitled', language: 'markdown' },
    ]);
    const withComments = core.documentSelector(settings({ languages: ['markdown', 'python'], comments: true }));
    const languages = withComments.filter((s) => s.scheme === 'file').map((s) => s.language);
    assert.deepEqual(languages.slice(0, 3), ['markdown', 'python', 'shellscript']);
    assert.equal(languages.length, new Set(languages).size);
    assert.ok(languages.includes('rust') && languages.includes('typescript'));
  });
});

describe('what the user reads', () => {
  test('the status bar shows the perplexity and whether learning is paused', () => {
    const info = { uri: 'file:///a.md', perplexity: 42.123, tokens: 19 };
    const shown = core.statusBar(info, true);
    assert.equal(shown.text, '$(symbol-text) PPL 42.1');
    assert.match(shown.tooltip, /^Perplexity 42\.123 over 19 tokens/);
    assert.match(shown.tooltip, /Learning on save\./);
    assert.equal(core.statusBar({ ...info, perplexity: 12345.6 }, true).text, '$(symbol-text) PPL 12346');
    const paused = core.statusBar(info, false);
    assert.equal(paused.text, '$(debug-pause) PPL 42.1');
    assert.match(paused.tooltip, /Learning is paused\./);
    assert.equal(core.statusBar({ ...info, perplexity: null, tokens: 0 }, true).text, '$(symbol-text) PPL –');
    assert.equal(core.statusBar(undefined, true).text, '$(symbol-text) PPL –');
  });

  test('command results', () => {
    const stats = {
      path: '/s.db',
      tokens: 1234,
      sources: 2,
      vocabulary: 99,
      ngrams: { '2': 50, '1': 99, '10': 1 },
      smoothing: 'kneser-ney',
      model_order: 3,
      learning: false,
      ignored: ['their'],
    };
    assert.equal(
      core.describeResult(core.COMMANDS.statistics, stats),
      'nextword: 1,234 tokens from 2 sources, 99 words; 1-grams 99, 2-grams 50, 10-grams 1; kneser-ney order 3; ' +
        'learning paused; ignoring their. Store: /s.db',
    );
    assert.equal(
      core.describeResult(core.COMMANDS.learnWorkspace, { learned: 3, skipped: 1, files: 4, cancelled: false }),
      'nextword learned 3 of 4 text files (1 skipped).',
    );
    assert.match(core.describeResult(core.COMMANDS.learnWorkspace, { learned: 0, files: 0 }) ?? '', /Open a folder/);
    assert.equal(core.describeResult(core.COMMANDS.forgetDocument, { forgotten: false }), 'nextword had not learned this document.');
    assert.equal(core.describeResult(core.COMMANDS.pauseLearning, { learning: false }), 'nextword: learning paused.');
    assert.equal(core.describeResult(core.COMMANDS.ignoreWord, { ignored: ['x'] }), undefined);
  });

  test('command errors: a command the server does not offer is "not available yet"', () => {
    const offered = ['nextword.statistics'];
    assert.equal(
      core.describeError(core.COMMANDS.retrainNeural, 'Command name is not defined', offered),
      'nextword: "Retrain the Neural Model" is not available from this server yet (Command name is not defined).',
    );
    assert.equal(
      core.describeError(core.COMMANDS.statistics, 'disk I/O error', offered),
      'nextword: "Statistics" failed: disk I/O error',
    );
  });

  test('the server exiting: code or signal, the last line it wrote, and what happens next', () => {
    const exit = { code: 1, signal: null, stderr: 'starting\nnextword: error: no such option: --bogus\n' };
    assert.equal(
      core.exitMessage(exit, false),
      'nextword: the server exited with code 1: nextword: error: no such option: --bogus. It will not be restarted; ' +
        'fix the cause and run "nextword: Restart Server" (details in Output › nextword).',
    );
    assert.equal(
      core.exitMessage({ code: null, signal: 'SIGKILL', stderr: '' }, true),
      'nextword: the server was killed (SIGKILL). Restarting it.',
    );
    assert.match(core.exitMessage(undefined, false), /^nextword: the server stopped\. It will not be restarted/);
  });

  test('crashes are restarted at most three times in three minutes', () => {
    const policy = new core.CrashPolicy();
    assert.deepEqual([0, 1000, 2000, 3000].map((t) => policy.shouldRestart(t)), [true, true, true, false]);
    assert.equal(policy.shouldRestart(4 * 60 * 1000), true);
  });

  test('the stderr tail keeps the end', () => {
    const tail = new core.Tail(10);
    tail.push('0123456789');
    tail.push(Buffer.from('abc'));
    assert.equal(`${tail}`, '3456789abc');
  });
});
