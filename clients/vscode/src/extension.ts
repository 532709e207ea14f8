// The nextword extension: starts `nextword serve` through vscode-languageclient, which provides completion, ghost
// text, diagnostics, hover and quick fixes. This file adds the status bar, the commands and the error messages; the
// logic behind them is in ./core (tested without VS Code).
import * as vscode from 'vscode';
import {
  CloseAction,
  DynamicFeature,
  ErrorAction,
  ExecuteCommandRequest,
  LanguageClient,
  State,
  StaticFeature,
} from 'vscode-languageclient/node';
import * as core from './core';

let client: NextwordClient | undefined;
let output: vscode.LogOutputChannel;
let status: vscode.StatusBarItem;
let learning = true;
let began = false; // whether the server has been started in this window (it starts with the first prose document)
let down: string | undefined; // why the server is not running, while the status bar says so
let exited: Promise<core.ServerExit> | undefined; // how the newest server process ended
const perplexities = new Map<string, core.Perplexity>();

/** The extension registers the server's command ids itself (to add the document, show results, and answer when the
 * server is down), so the client's automatic registration of them is left out. */
class NextwordClient extends LanguageClient {
  override registerFeature(feature: StaticFeature | DynamicFeature<unknown>): void {
    if ('registrationType' in feature && feature.registrationType.method === ExecuteCommandRequest.method) {
      return;
    }
    super.registerFeature(feature);
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel('nextword', { log: true });
  status = vscode.window.createStatusBarItem('nextword.perplexity', vscode.StatusBarAlignment.Right, 100);
  status.name = 'nextword perplexity';
  status.command = core.COMMANDS.statistics;
  const command = (id: string, run: (...args: any[]) => unknown) => vscode.commands.registerCommand(id, run);
  const { learnWorkspace, retrainNeural, pauseLearning, resumeLearning, statistics } = core.COMMANDS;
  context.subscriptions.push(
    output,
    status,
    ...[learnWorkspace, retrainNeural, pauseLearning, resumeLearning, statistics].map((id) =>
      command(id, () => execute(id, [])),
    ),
    command(core.COMMANDS.forgetDocument, (uri?: string) => {
      const target = uri ?? vscode.window.activeTextEditor?.document.uri.toString();
      return target ? execute(core.COMMANDS.forgetDocument, [target]) : undefined;
    }),
    command(core.COMMANDS.ignoreWord, async (word?: string) => {
      const editor = vscode.window.activeTextEditor;
      const range = editor?.document.getWordRangeAtPosition(editor.selection.active);
      const value = range ? editor?.document.getText(range) : undefined;
      word ??= await vscode.window.showInputBox({ prompt: 'A word nextword should never flag', value });
      return word ? execute(core.COMMANDS.ignoreWord, [word]) : undefined;
    }),
    command('nextword.restartServer', () => restart()),
    command('nextword.showOutput', () => output.show()),
    vscode.window.onDidChangeActiveTextEditor(() => updateStatus()),
    vscode.workspace.onDidOpenTextDocument(() => startWhenNeeded()),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (core.changed((section) => event.affectsConfiguration(section), core.RESTART_SETTINGS)) {
        void (began ? restart() : startWhenNeeded());
      } else if (core.changed((section) => event.affectsConfiguration(section), core.SERVER_SETTINGS)) {
        void client?.sendNotification('workspace/didChangeConfiguration', { settings: { nextword: serverSettings() } });
      }
    }),
  );
  await startWhenNeeded();
}

/** The extension activates for every language its settings can enable (package.json: the prose and comment
 * languages, and after start-up for any other `nextword.languages`); the server starts with the first document
 * it is for, not before. */
async function startWhenNeeded(): Promise<void> {
  const selector = core.documentSelector(vscode.workspace.getConfiguration('nextword'));
  if (!began && vscode.workspace.textDocuments.some((document) => vscode.languages.match(selector, document) > 0)) {
    began = true;
    await start();
  }
}

export function deactivate(): Thenable<void> | undefined {
  return client?.stop();
}

function serverSettings(): Record<string, unknown> {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  return core.serverSettings(vscode.workspace.getConfiguration('nextword'), folder);
}

async function start(): Promise<void> {
  const configuration = vscode.workspace.getConfiguration('nextword');
  const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const launch = core.serverLaunch(configuration, cwd);
  const executable = core.findExecutable(launch.command);
  if (executable === undefined) {
    return fail(core.notFoundMessage(launch.command), 'Open Settings');
  }
  down = undefined;
  const crashes = new core.CrashPolicy();
  let told = false; // whether the close handler has told the user why the server stopped
  learning = true;
  const spawn = () => core.spawnServer(executable, launch.args, cwd).then((server) => {
    exited = server.exited;
    return server.child;
  });
  const started: NextwordClient = new NextwordClient('nextword', 'nextword', spawn, {
    documentSelector: core.documentSelector(configuration),
    initializationOptions: { nextword: serverSettings() },
    outputChannel: output,
    errorHandler: {
      error: () => ({ action: ErrorAction.Continue }),
      closed: async () => {
        // A server that dies while starting is misconfigured: restarting it would only repeat the failure.
        const again = started.state === State.Running && crashes.shouldRestart(Date.now());
        const message = core.exitMessage(await core.within(exited, 1000), again);
        told = !again;
        void (again ? output.warn(message) : fail(message, 'Restart Server'));
        return { action: again ? CloseAction.Restart : CloseAction.DoNotRestart, handled: true };
      },
    },
  });
  client = started;
  client.onNotification('nextword/perplexity', (info: core.Perplexity) => {
    perplexities.set(info.uri, info);
    updateStatus();
  });
  try {
    await client.start();
    updateStatus();
  } catch (error) {
    if (!told) {
      void fail((error as Error).message ?? String(error), 'Open Settings');
    }
  }
}

async function restart(): Promise<void> {
  began = true;
  const old = client;
  client = undefined;
  await old?.stop().catch(() => undefined);
  perplexities.clear();
  await start();
}

async function execute(command: string, args: unknown[]): Promise<void> {
  if (!client?.isRunning()) {
    return fail('nextword: the server is not running.', 'Restart Server');
  }
  try {
    const result = await client.sendRequest(ExecuteCommandRequest.type, { command, arguments: args });
    if (command === core.COMMANDS.pauseLearning || command === core.COMMANDS.resumeLearning) {
      learning = command === core.COMMANDS.resumeLearning;
      updateStatus();
    }
    const message = core.describeResult(command, result);
    if (message) {
      void vscode.window.showInformationMessage(message);
    }
  } catch (error) {
    const offered = client?.initializeResult?.capabilities.executeCommandProvider?.commands;
    void vscode.window.showErrorMessage(core.describeError(command, (error as Error).message ?? String(error), offered));
  }
}

/** Show an error with buttons that lead to the fix; the status bar shows that nextword is down. */
async function fail(message: string, ...actions: string[]): Promise<void> {
  output.error(message);
  down = message;
  updateStatus();
  const choice = await vscode.window.showErrorMessage(message, ...actions, 'Show Output');
  if (choice === 'Open Settings') {
    await vscode.commands.executeCommand('workbench.action.openSettings', 'nextword.server');
  } else if (choice === 'Restart Server') {
    await restart();
  } else if (choice === 'Show Output') {
    output.show();
  }
}

function updateStatus(): void {
  if (down !== undefined && !client?.isRunning()) {
    status.text = '$(error) nextword';
    status.tooltip = down;
    return status.show(); // until the server runs again, whichever editor is active
  }
  const document = vscode.window.activeTextEditor?.document;
  const selector = core.documentSelector(vscode.workspace.getConfiguration('nextword'));
  if (!client?.isRunning() || !document || !vscode.languages.match(selector, document)) {
    return status.hide();
  }
  const { text, tooltip } = core.statusBar(perplexities.get(document.uri.toString()), learning);
  status.text = text;
  status.tooltip = tooltip;
  status.show();
}
