import type { Message } from '../hub/message.js';

/**
 * Carries newly stored messages between nodes. A broker never stores anything (that is the Store's
 * job); it only tells every node's hub, this one included, that messages were appended.
 */
export interface Broker {
  /**
   * Announces messages already durable in the store. Per channel, every node's handler sees them in
   * offset order; a handler may see a message it already has (the hub drops it by offset).
   */
  publish(messages: readonly Message[]): void;
  /** Registers the one handler of this node (the hub). */
  onMessages(handler: (messages: readonly Message[]) => void): void;
  close(): Promise<void>;
}
