// Cost of token checks on connect (issue 5): WebSocket connections per second, each opening with a
// token (or none), subscribing to one channel and closing, against a fresh server per variant. Every
// connection carries its own token (one per user), so the server's verified-token cache does not help.
// Run: npm run build && node --import tsx bench/connect.ts   (BENCH_CONNECTS, BENCH_REPEATS)
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { SignJWT } from 'jose';
import WebSocket from 'ws';
import { ROOT, cpuTimeUs, stopChild, track } from './processes.js';

const CONNECTS = Number(process.env.BENCH_CONNECTS ?? 3000);
const REPEATS = Number(process.env.BENCH_REPEATS ?? 3);
const CONCURRENCY = 64;
const SECRET = 'bench-secret-that-is-at-least-32-bytes-long!!';
const keyDir = mkdtempSync(join(tmpdir(), 'herald-bench-keys-'));
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const publicKeyPath = join(keyDir, 'public.pem');
writeFileSync(publicKeyPath, rsa.publicKey.export({ type: 'spki', format: 'pem' }));

interface Variant {
  name: string;
  args: string[];
  sign?: (sub: string) => Promise<string>;
}

const claims = (sub: string) => ({ sub, channels: ['bench:*'], exp: Math.floor(Date.now() / 1000) + 3600 });
const VARIANTS: Variant[] = [
  { name: 'no token (anonymous)', args: [] },
  {
    name: 'HS256 token',
    args: ['--token-secret', SECRET],
    sign: (sub) => new SignJWT(claims(sub)).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(SECRET)),
  },
  {
    name: 'RS256 token (2048-bit)',
    args: ['--token-public-key', publicKeyPath],
    sign: (sub) => new SignJWT(claims(sub)).setProtectedHeader({ alg: 'RS256' }).sign(rsa.privateKey),
  },
];

async function startServer(args: string[]): Promise<{ url: string; pid: number; stop(): Promise<void> }> {
  const child = track(
    spawn(process.execPath, ['bin/herald.js', '--port', '0', '--store', 'memory', '--log-level', 'warn', ...args], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.once('exit', (code) => reject(new Error(`server exited (${code}): ${out}`)));
  });
  return { url, pid: child.pid!, stop: () => stopChild(child) };
}

function connectOnce(wsUrl: string, index: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(wsUrl);
    ws.once('open', () => ws.send(JSON.stringify({ op: 'subscribe', channel: `bench:${index % 100}` })));
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as { op: string };
      if (frame.op === 'subscribed') ws.close();
      else if (frame.op === 'error') reject(new Error(data.toString()));
    });
    ws.once('close', () => resolve());
    ws.once('error', reject);
  });
}

async function measure(variant: Variant): Promise<{ perSecond: number; cpuUsPerConnect: number }> {
  const tokens = variant.sign ? await Promise.all(Array.from({ length: CONNECTS }, (_, i) => variant.sign!(`user-${i}`))) : [];
  const server = await startServer(variant.args);
  try {
    const wsBase = `${server.url.replace('http', 'ws')}/v1/ws`;
    const urlFor = (i: number): string => (variant.sign ? `${wsBase}?token=${tokens[i]}` : wsBase);
    for (let i = 0; i < 200; i++) await connectOnce(urlFor(i % Math.max(tokens.length, 1)), i); // warm-up
    const cpuBefore = cpuTimeUs(server.pid);
    const started = performance.now();
    let next = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < CONNECTS) {
          const i = next++;
          await connectOnce(urlFor(i), i);
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    return { perSecond: CONNECTS / seconds, cpuUsPerConnect: (cpuTimeUs(server.pid) - cpuBefore) / CONNECTS };
  } finally {
    await server.stop();
  }
}

const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const results = new Map<string, { perSecond: number[]; cpu: number[] }>(VARIANTS.map((v) => [v.name, { perSecond: [], cpu: [] }]));
for (let round = 0; round < REPEATS; round++) {
  for (const variant of VARIANTS) {
    const r = await measure(variant);
    results.get(variant.name)!.perSecond.push(r.perSecond);
    results.get(variant.name)!.cpu.push(r.cpuUsPerConnect);
  }
}
rmSync(keyDir, { recursive: true, force: true });
const baseline = median(results.get(VARIANTS[0]!.name)!.perSecond);
console.log(`\nWebSocket connect + subscribe + close, ${CONNECTS} connections, ${CONCURRENCY} at a time, median of ${REPEATS}:\n`);
console.log('| connect with | connections/s | server CPU µs/connection | vs no token |');
console.log('|---|---:|---:|---:|');
for (const [name, r] of results) {
  const perSecond = median(r.perSecond);
  console.log(`| ${name} | ${Math.round(perSecond).toLocaleString('en')} | ${median(r.cpu).toFixed(0)} | ${(perSecond / baseline).toFixed(2)}× |`);
}
