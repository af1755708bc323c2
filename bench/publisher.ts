// Publishing over HTTP, as a backend would: POST /v1/publish on keep-alive connections. Each message's
// data carries its publish time `"t"` (epoch ms, sub-ms precision) so receivers can measure latency.
import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { nowMs } from './protocol.js';
import { percentile } from './report.js';

/** Pads the data to ~100 bytes of JSON: {"t":1795403500652.37,"pad":"xxx…"}. */
const PAD = 'x'.repeat(69);

export function messageData(): string {
  return `{"t":${nowMs().toFixed(2)},"pad":"${PAD}"}`;
}

export interface HttpResult {
  status: number;
  body: string;
}

/** What publishes go through: one server's HttpClient, or several servers' in turn. */
export interface HttpCaller {
  call(method: 'GET' | 'POST', path: string, body?: string | Buffer): Promise<HttpResult>;
}

/** Spreads requests over several servers (the nodes of one deployment), one after the other. */
export function roundRobin(callers: readonly HttpCaller[]): HttpCaller {
  let next = 0;
  return { call: (method, path, body) => callers[next++ % callers.length]!.call(method, path, body) };
}

export class HttpClient implements HttpCaller {
  readonly #agent: Agent;
  readonly #host: string;
  readonly #port: number;

  constructor(host: string, port: number, maxSockets: number) {
    this.#host = host;
    this.#port = port;
    // Idle keep-alive sockets are closed by us after 2 s, before the server's 5 s keep-alive timeout
    // can close one just as we reuse it (a reset publish would count as a lost message).
    this.#agent = new Agent({ keepAlive: true, maxSockets, timeout: 2000 });
  }

  call(method: 'GET' | 'POST', path: string, body?: string | Buffer): Promise<HttpResult> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = {};
      if (body !== undefined) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Length'] = Buffer.byteLength(body);
      }
      const req = request({ host: this.#host, port: this.#port, method, path, agent: this.#agent, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  async json(path: string): Promise<unknown> {
    const res = await this.call('GET', path);
    if (res.status !== 200) throw new Error(`GET ${path}: ${res.status} ${res.body}`);
    return JSON.parse(res.body);
  }

  close(): void {
    this.#agent.destroy();
  }
}

/**
 * Publishes one message per request to `channel`, either at a fixed rate or, with `rate: 'max'`, as
 * fast as deliveries keep up: at most `window` messages may be published beyond those every subscriber
 * has received (`delivered()` / subscribers), so the servers are saturated without queueing unboundedly.
 */
export class Publisher {
  readonly #client: HttpCaller;
  readonly #channel: string;
  readonly #maxInFlight: number;
  published = 0;
  /** Publishes the server did not accept (their messages are not expected anywhere). */
  failed = 0;
  /** Publish round trips (request sent → response read), in units of 0.1 ms. */
  readonly roundTrips = new Map<number, number>();
  lastError = '';
  #inFlight = 0;
  #timer: NodeJS.Timeout | undefined;
  #isStopped = false;
  #idle: (() => void) | undefined;

  constructor(client: HttpCaller, channel: string, maxInFlight = 4) {
    this.#client = client;
    this.#channel = channel;
    this.#maxInFlight = maxInFlight;
  }

  atRate(messagesPerS: number): void {
    const startMs = performance.now();
    this.#timer = setInterval(() => {
      const due = Math.floor(((performance.now() - startMs) / 1000) * messagesPerS) + 1;
      while (this.published < due && !this.#isStopped) this.#publishOne();
    }, 2);
  }

  asFastAsDelivered(delivered: () => number, subscribers: number, window: number): () => void {
    const pump = (): void => {
      const allowed = Math.floor(delivered() / subscribers) + window;
      while (!this.#isStopped && this.published < allowed && this.#inFlight < this.#maxInFlight) this.#publishOne();
    };
    this.#afterEach = pump;
    this.#timer = setInterval(pump, 5);
    pump();
    return pump;
  }

  #afterEach: (() => void) | undefined;

  #publishOne(): void {
    this.published++;
    this.#inFlight++;
    const body = `{"channel":"${this.#channel}","data":${messageData()}}`;
    const startMs = performance.now();
    this.#client.call('POST', '/v1/publish', body).then(
      (res) => {
        const bucket = Math.round((performance.now() - startMs) * 10);
        this.roundTrips.set(bucket, (this.roundTrips.get(bucket) ?? 0) + 1);
        if (res.status !== 200) {
          this.failed++;
          this.lastError = `${res.status} ${res.body}`;
        }
      },
      (err: Error) => {
        this.failed++;
        this.lastError = err.message;
      },
    ).finally(() => {
      this.#inFlight--;
      if (this.#inFlight === 0) this.#idle?.();
      this.#afterEach?.();
    });
  }

  /** Stops publishing and waits for the requests in flight. */
  async stop(): Promise<void> {
    this.#isStopped = true;
    clearInterval(this.#timer);
    if (this.#inFlight > 0) await new Promise<void>((resolve) => (this.#idle = resolve));
  }
}

export interface BatchPublishResult {
  messagesPerS: number;
  /** CPU time `cpuUs` counted in the window, per accepted message. */
  cpuUsPerMessage: number;
  batchP50Ms: number;
  batchP99Ms: number;
  /** Requests not answered 200 in the window. */
  failed: number;
}

/**
 * The publish-throughput load: `publishers` concurrent loops, each POSTing a pre-encoded batch of
 * `batchSize` messages (~100-byte data) to its own channel, publisher p through callers[p % n];
 * accepted messages/s over `windowS` after `warmupS`, and the CPU `cpuUs()` counted meanwhile.
 */
export async function publishBatches(options: {
  callers: readonly HttpCaller[];
  publishers: number;
  batchSize: number;
  warmupS: number;
  windowS: number;
  cpuUs: () => number;
}): Promise<BatchPublishResult> {
  const { callers, publishers, batchSize } = options;
  // Bodies are encoded once: the publishers should cost the machine as little as possible.
  const bodies = Array.from({ length: publishers }, (_, p) =>
    Buffer.from(JSON.stringify({ messages: Array.from({ length: batchSize }, () => ({ channel: `publish-${p}`, data: JSON.parse(messageData()) as unknown })) })),
  );
  for (const caller of callers) {
    const check = await caller.call('POST', '/v1/publish', bodies[0]!);
    if (check.status !== 200 || (JSON.parse(check.body) as { results: unknown[] }).results.length !== batchSize) {
      throw new Error(`publish: ${check.status} ${check.body.slice(0, 200)}`);
    }
  }
  let isRunning = true;
  let isCounting = false;
  let accepted = 0;
  let failed = 0;
  const latencies = new Map<number, number>();
  const loops = bodies.map(async (body, p) => {
    const caller = callers[p % callers.length]!;
    while (isRunning) {
      const startMs = performance.now();
      const res = await caller.call('POST', '/v1/publish', body);
      if (!isCounting) continue;
      if (res.status !== 200) {
        failed++;
        continue;
      }
      accepted += batchSize;
      const bucket = Math.round((performance.now() - startMs) * 10);
      latencies.set(bucket, (latencies.get(bucket) ?? 0) + 1);
    }
  });
  await sleep(options.warmupS * 1000);
  const cpu0 = options.cpuUs();
  const t0 = performance.now();
  isCounting = true;
  await sleep(options.windowS * 1000);
  isCounting = false;
  const cpu1 = options.cpuUs();
  const elapsedS = (performance.now() - t0) / 1000;
  isRunning = false;
  await Promise.all(loops);
  return {
    messagesPerS: accepted / elapsedS,
    cpuUsPerMessage: (cpu1 - cpu0) / accepted,
    batchP50Ms: percentile(latencies, 50),
    batchP99Ms: percentile(latencies, 99),
    failed,
  };
}
