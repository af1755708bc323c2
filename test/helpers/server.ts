import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { Config } from '../../src/config.js';
import { startHerald, type RunningHerald } from '../../src/herald.js';

/** A fresh data directory, removed by the returned cleanup. */
export function tempDataDir(): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'herald-test-'));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Starts Herald in this process on an ephemeral port with a memory store unless told otherwise. */
export async function startTestServer(overrides: Partial<Config> = {}): Promise<RunningHerald> {
  return startHerald({ port: 0, store: 'memory', logLevel: 'silent', ...overrides });
}

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const MAIN = new URL('../../src/cli/main.ts', import.meta.url).pathname;

/** Starts the real CLI as a child process (for SIGKILL/restart tests) and waits for its listening line. */
export async function startServerProcess(args: string[]): Promise<ServerProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', MAIN, '--port', '0', '--log-level', 'warn', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(output);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`herald exited with ${code} before listening: ${output}`)));
  });
  return {
    url,
    child,
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(signal);
      await once(child, 'exit');
    },
  };
}

export async function publish(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${url}/v1/publish`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
