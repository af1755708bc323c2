/**
 * Members by channel, each channel's set dropped when it empties, so a channel nobody follows any
 * more costs nothing. The hub keeps its subscribers here, presence fan-out its listeners.
 */
export class ChannelSets<T> extends Map<string, Set<T>> {
  add(channel: string, member: T): void {
    let set = this.get(channel);
    if (set === undefined) {
      set = new Set();
      this.set(channel, set);
    }
    set.add(member);
  }

  remove(channel: string, member: T): void {
    const set = this.get(channel);
    if (set === undefined) return;
    set.delete(member);
    if (set.size === 0) this.delete(channel);
  }
}
