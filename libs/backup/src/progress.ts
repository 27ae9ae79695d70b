/** What the job row shows while a backup copies data. */
export interface ProgressUpdate {
  /** 0–100 over all disks. */
  progress: number;
  bytesDone: number;
  bytesTotal: number;
  /** Bytes per second since copying started. */
  speed: number;
  phase: string;
}

/**
 * Turns a stream of "bytes done" notifications into at most one job-row update per interval. Writes are
 * serialised (never two in flight) and a failed write is reported through `onError`, never thrown into the copy.
 */
export class ProgressTracker {
  private readonly startedAt: number;
  private lastFlushAt = -Infinity;
  private bytesDone = 0;
  private phase = '';
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly bytesTotal: number,
    private readonly write: (update: ProgressUpdate) => Promise<void>,
    private readonly onError: (err: unknown) => void,
    private readonly intervalMs = 1000,
    private readonly now: () => number = Date.now,
  ) {
    this.startedAt = now();
  }

  /** Records progress; writes it when the last write is at least `intervalMs` old. */
  update(bytesDone: number, phase?: string): void {
    this.bytesDone = Math.min(Math.max(bytesDone, this.bytesDone), this.bytesTotal);
    if (phase !== undefined) this.phase = phase;
    if (this.now() - this.lastFlushAt >= this.intervalMs) this.flush();
  }

  /** The current state, as the next write would store it. */
  snapshot(): ProgressUpdate {
    const seconds = (this.now() - this.startedAt) / 1000;
    return {
      progress: this.bytesTotal > 0 ? Math.round((this.bytesDone / this.bytesTotal) * 10000) / 100 : 100,
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      speed: seconds > 0 ? Math.round(this.bytesDone / seconds) : 0,
      phase: this.phase,
    };
  }

  /** Writes the current state now and waits until every write is done. */
  async drain(): Promise<void> {
    this.flush();
    await this.chain;
  }

  private flush(): void {
    this.lastFlushAt = this.now();
    const update = this.snapshot();
    this.chain = this.chain.then(() => this.write(update)).catch((err: unknown) => this.onError(err));
  }
}
