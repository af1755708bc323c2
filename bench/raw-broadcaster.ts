// The baseline Herald is measured against: a minimal Node broadcaster (node:http + ws) with the same
// three wire shapes as Herald (SSE stream, WebSocket, long poll) and the same envelope bytes, so the load
// generator talks to both servers identically. Each published message is encoded ONCE per wire format
// and that one Buffer is written to every socket; there is no store, no per-connection cursor, no
// backpressure check, no heartbeat: the floor a real server can be compared with.
//
// Usage: node --import tsx bench/raw-broadcaster.ts [--host 127.0.0.1] [--port 0]
// Prints `listening on http://HOST:PORT` like Herald.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';

const EPOCH = 'rawbroadcast';
/** Messages kept so a poll that fell behind can be answered from memory (Herald's default window). */
const HISTORY = 1000;
const POLL_BATCH_LIMIT = 100;
const POLL_TIMEOUT_S = 25;

const { values } = parseArgs({ options: { host: { type: 'string' }, port: { type: 'string' } }, strict: true });
const host = values.host ?? '127.0.0.1';
const port = Number(values.port ?? '0');

const sseClients = new Set<ServerResponse>();
const wsClients = new Set<WebSocket>();
/** Held polls, all waiting at the head; the value is the deadline (ms). */
const heldPolls = new Map<ServerResponse, number>();
/** Envelopes (JSON text) of the last HISTORY messages; history[i] has offset firstOffset + i. */
const history: string[] = [];
let firstOffset = 1;
let headOffset = 0;
/** Poll answers for polls behind the head, one per starting offset; emptied on every publish. */
const catchUpAnswers = new Map<number, Buffer>();

function cursorOf(channel: string, offset: number): string {
  return Buffer.from(`${channel}\n${EPOCH}\n${offset}`).toString('base64url');
}

function offsetOfCursor(cursor: string): number {
  const offset = Number(Buffer.from(cursor, 'base64url').toString('utf8').split('\n')[2]);
  return Number.isInteger(offset) && offset >= 0 ? offset : headOffset;
}

function pollAnswer(envelopes: readonly string[], cursor: string): Buffer {
  return Buffer.from(`{"messages":[${envelopes.join(',')}],"cursor":"${cursor}"}`);
}

function answerPoll(res: ServerResponse, body: Buffer): void {
  res.writeHead(200, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': body.length,
    'Cache-Control': 'no-store',
  });
  res.end(body);
}

function publish(messages: readonly { channel: string; data: unknown }[]): { channel: string; offset: number; epoch: string }[] {
  const results = [];
  const envelopes: string[] = [];
  let cursor = '';
  for (const m of messages) {
    const offset = ++headOffset;
    cursor = cursorOf(m.channel, offset);
    const envelope = `{"channel":${JSON.stringify(m.channel)},"offset":${offset},"epoch":"${EPOCH}","data":${JSON.stringify(m.data)},"cursor":"${cursor}"}`;
    envelopes.push(envelope);
    history.push(envelope);
    if (history.length > HISTORY) {
      history.shift();
      firstOffset++;
    }
    // One buffer per wire format, the same bytes to every socket.
    const wsFrame = Buffer.from(`{"op":"message",${envelope.slice(1)}`);
    const sseBlock = Buffer.from(`id: ${cursor}\nevent: message\ndata: ${envelope}\n\n`);
    for (const ws of wsClients) ws.send(wsFrame, { binary: false });
    for (const res of sseClients) res.write(sseBlock);
    results.push({ channel: m.channel, offset, epoch: EPOCH });
  }
  catchUpAnswers.clear();
  if (heldPolls.size > 0 && envelopes.length > 0) {
    const body = pollAnswer(envelopes, cursor);
    const held = [...heldPolls.keys()];
    heldPolls.clear();
    for (const res of held) answerPoll(res, body);
  }
  return results;
}

function handlePoll(res: ServerResponse, url: URL): void {
  const cursor = url.searchParams.get('cursor');
  const after = cursor === null || cursor === '' ? headOffset : offsetOfCursor(cursor);
  if (after < headOffset) {
    const from = Math.max(after + 1, firstOffset);
    let body = catchUpAnswers.get(from);
    if (body === undefined) {
      const envelopes = history.slice(from - firstOffset, from - firstOffset + POLL_BATCH_LIMIT);
      const last = from + envelopes.length - 1;
      body = pollAnswer(envelopes, cursorOf(url.searchParams.get('channel') ?? 'bench', last));
      catchUpAnswers.set(from, body);
    }
    answerPoll(res, body);
    return;
  }
  const timeoutS = Number(url.searchParams.get('timeout') ?? POLL_TIMEOUT_S);
  heldPolls.set(res, Date.now() + timeoutS * 1000);
  res.on('close', () => heldPolls.delete(res));
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

const server = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://raw');
  switch (url.pathname) {
    case '/v1/publish': {
      readBody(req).then((text) => {
        const body = JSON.parse(text) as { channel: string; data: unknown } | { messages: { channel: string; data: unknown }[] };
        const results = publish('messages' in body ? body.messages : [body]);
        const json = Buffer.from(JSON.stringify({ results }));
        res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': json.length }).end(json);
      }).catch(() => res.writeHead(400).end());
      return;
    }
    case '/v1/sse':
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache' });
      res.write(':ok\n\n');
      sseClients.add(res);
      res.on('close', () => sseClients.delete(res));
      return;
    case '/v1/poll':
      handlePoll(res, url);
      return;
    case '/v1/stats': {
      const stats = { connections: { websocket: wsClients.size, sse: sseClients.size, poll: heldPolls.size } };
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify(stats));
      return;
    }
    case '/healthz':
      res.writeHead(200, { 'Content-Type': 'application/json' }).end('{"status":"ok"}');
      return;
    default:
      res.writeHead(404).end();
  }
});

const wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false });
server.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.on('message', (data: RawData) => {
      const frame = JSON.parse(data.toString()) as { op?: string; channel?: string };
      if (frame.op !== 'subscribe') return;
      wsClients.add(ws);
      ws.send(Buffer.from(JSON.stringify({ op: 'subscribed', channel: frame.channel })), { binary: false });
    });
    ws.on('close', () => wsClients.delete(ws));
    ws.on('error', () => wsClients.delete(ws));
  });
});

// Poll deadlines: one shared sweep, like Herald's.
setInterval(() => {
  const nowMs = Date.now();
  for (const [res, deadlineMs] of heldPolls) {
    if (deadlineMs > nowMs) continue;
    heldPolls.delete(res);
    answerPoll(res, pollAnswer([], cursorOf('bench', headOffset)));
  }
}, 250).unref();

server.listen(port, host, () => {
  const { port: actual } = server.address() as AddressInfo;
  process.stdout.write(`listening on http://${host}:${actual}\n`);
});

const stop = (): void => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
};
process.once('SIGINT', stop);
process.once('SIGTERM', stop);
