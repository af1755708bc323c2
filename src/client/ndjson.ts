/**
 * Splits a byte stream into lines (application/x-ndjson: one JSON value per `\n`-terminated line).
 * Apart from the transport so it can be read and tested on its own; knows nothing of Herald.
 */
export class LineDecoder {
  readonly #decoder = new TextDecoder();
  #partial = '';

  /** The complete, non-empty lines the chunk finishes; a trailing partial line waits for the next chunk. */
  push(chunk: Uint8Array): string[] {
    const lines = (this.#partial + this.#decoder.decode(chunk, { stream: true })).split('\n');
    this.#partial = lines.pop()!;
    return lines.filter((line) => line.trim() !== '');
  }
}
