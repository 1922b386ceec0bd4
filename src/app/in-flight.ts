// Requests still being relayed, so shutdown can wait for their usage records and settles.
export class InFlight {
  private readonly running = new Set<Promise<unknown>>();
  private streaming = 0;

  /** `stream`: the client asked for a streamed answer (counted apart for metrics). */
  track<T>(work: Promise<T>, stream = false): Promise<T> {
    this.running.add(work);
    if (stream) this.streaming++;
    const done = () => {
      this.running.delete(work);
      if (stream) this.streaming--;
    };
    work.then(done, done);
    return work;
  }

  get size(): number {
    return this.running.size;
  }

  /** Tracked requests that are streams. */
  get streams(): number {
    return this.streaming;
  }

  /** Resolves when every tracked request has finished, or at `deadline` (epoch ms). */
  async settled(deadline: number): Promise<void> {
    const wait = Math.max(0, deadline - Date.now());
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.running]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, wait);
      }),
    ]);
    clearTimeout(timer);
  }
}
