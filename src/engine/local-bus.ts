import type { ControlBus } from './engine.js';

/** The bus of a node alone: every notice comes back to this node, on the next turn of the event loop. */
export class LocalBus implements ControlBus {
  readonly nodeId = 'local';
  readonly #handlers = new Map<string, (payload: string, fromNodeId: string) => void>();

  broadcast(topic: string, payload: string): void {
    this.sendTo(this.nodeId, topic, payload);
  }

  sendTo(nodeId: string, topic: string, payload: string): void {
    if (nodeId !== this.nodeId) return;
    queueMicrotask(() => this.#handlers.get(topic)?.(payload, this.nodeId));
  }

  on(topic: string, handler: (payload: string, fromNodeId: string) => void): void {
    this.#handlers.set(topic, handler);
  }
}
