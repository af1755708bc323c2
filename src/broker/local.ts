import type { Message } from '../hub/message.js';
import type { Broker } from './broker.js';

/** A single node: announcing is a synchronous call into this node's hub. */
export class LocalBroker implements Broker {
  #handler: ((messages: readonly Message[]) => void) | undefined;

  publish(messages: readonly Message[]): void {
    this.#handler?.(messages);
  }

  onMessages(handler: (messages: readonly Message[]) => void): void {
    this.#handler = handler;
  }

  async close(): Promise<void> {
    this.#handler = undefined;
  }
}
