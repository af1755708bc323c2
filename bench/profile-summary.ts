// Summarises a V8 CPU profile (node --cpu-prof, e.g. from BENCH_PROFILE_DIR) by self time: which
// functions, and which files, the server spent its CPU in.
//
// Usage: node --import tsx bench/profile-summary.ts FILE.cpuprofile|DIR [top=30]
// Given a folder (one cell of BENCH_PROFILE_DIR), it reads the largest profile: the main thread's.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ROOT } from './processes.js';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function place(url: string, line: number): string {
  if (url === '') return '(native)';
  const path = url.startsWith('file://') ? relative(ROOT, fileURLToPath(url)) : url;
  return `${path}:${line + 1}`;
}

/** Herald's own code, the baseline's, libraries, Node's JS internals, or native (syscalls, GC). */
function layerOf(functionName: string, url: string): string {
  if (url === '') return functionName === '(idle)' || functionName === '(garbage collector)' ? functionName : `native: ${functionName}`.replace(/^native: (writev|writeBuffer|writeUtf8String|writeLatin1String|close|shutdown|read)$/, 'native: socket syscalls');
  if (url.includes('/node_modules/')) return `library: ${url.replace(/^.*\/node_modules\/([^/]+)\/.*$/, '$1')}`;
  if (url.startsWith('node:')) return 'node internals (JS)';
  if (url.includes('/dist/') || url.includes('/src/')) return 'herald (dist/)';
  if (url.includes('/bench/')) return 'raw broadcaster (bench/)';
  return 'other JS';
}

function largestProfile(dir: string): string {
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).map((f) => join(dir, f));
  if (files.length === 0) throw new Error(`no .cpuprofile in ${dir}`);
  return files.sort((a, b) => statSync(b).size - statSync(a).size)[0]!;
}

function main(): void {
  const [given, topText] = process.argv.slice(2);
  if (given === undefined) throw new Error('usage: profile-summary.ts FILE.cpuprofile|DIR [top]');
  const file = statSync(given).isDirectory() ? largestProfile(given) : given;
  const top = Number(topText ?? 30);
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const totalUs = profile.endTime - profile.startTime;
  const byFunction = new Map<string, number>();
  const byFile = new Map<string, number>();
  const byLayer = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    const fn = `${functionName || '(anonymous)'}  ${place(url, lineNumber)}`;
    byFunction.set(fn, (byFunction.get(fn) ?? 0) + us);
    const fileKey = url === '' ? `(${functionName})` : place(url, 0).replace(/:1$/, '');
    byFile.set(fileKey, (byFile.get(fileKey) ?? 0) + us);
    const layer = layerOf(functionName, url);
    byLayer.set(layer, (byLayer.get(layer) ?? 0) + us);
  }
  const lines: string[] = [`${file}: ${(totalUs / 1e6).toFixed(1)} s profiled`];
  const print = (title: string, entries: Map<string, number>): void => {
    lines.push('', title);
    for (const [key, us] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      lines.push(`${((us / totalUs) * 100).toFixed(1).padStart(6)}%  ${(us / 1000).toFixed(0).padStart(7)} ms  ${key}`);
    }
  };
  // Inclusive time of Herald's and the baseline's own functions: what each costs with all it calls.
  const inclusive = new Map<number, number>();
  const total = (id: number): number => {
    let us = inclusive.get(id);
    if (us === undefined) {
      const node = byId.get(id)!;
      us = (selfUs.get(id) ?? 0) + (node.children ?? []).reduce((sum, child) => sum + total(child), 0);
      inclusive.set(id, us);
    }
    return us;
  };
  const parents = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const byOwnFunction = new Map<string, number>();
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const layer = layerOf(functionName, url);
    if (layer !== 'herald (dist/)' && layer !== 'raw broadcaster (bench/)') continue;
    // Count a frame only when its function is not already on the stack above it (recursion).
    const key = `${functionName || '(anonymous)'}  ${place(url, lineNumber)}`;
    let above = parents.get(node.id);
    let isNested = false;
    while (above !== undefined) {
      const frame = byId.get(above)!.callFrame;
      if (frame.url === url && frame.lineNumber === lineNumber && frame.functionName === functionName) {
        isNested = true;
        break;
      }
      above = parents.get(above);
    }
    if (!isNested) byOwnFunction.set(key, (byOwnFunction.get(key) ?? 0) + total(node.id));
  }
  print('self time by layer', byLayer);
  print('inclusive time of the server\'s own functions (with everything they call)', byOwnFunction);
  print('self time by function', byFunction);
  print('self time by file', byFile);
  process.stdout.write(`${lines.join('\n')}\n`);
}

main();
