/** Open browse sessions of restore points, shared by concurrent requests and closed after a short idle time. */
import type { BrowseView } from './browser';

/** A browser that can stop working on its own (a worker thread that crashed or hung): `failure` is then set. */
type MaybeFailing = BrowseView & { readonly failure?: Error | null };

export interface BrowseSessionOptions<B extends BrowseView = BrowseView> {
  /** Opens the browser of a restore point (its disks, volumes and file systems). */
  open: (pointId: string) => Promise<B>;
  /** Idle time before a session is closed (default 60 s). */
  idleMs?: number;
  /**
   * Most sessions open at once (default 16): a new one first closes the longest-idle one, and waits while all
   * are in use.
   */
  maxSessions?: number;
}

interface Session<B> {
  browser: Promise<B>;
  /** Set once opened. */
  opened?: B;
  users: number;
  lastUsed: number;
}

export class BrowseSessions<B extends BrowseView = BrowseView> {
  private readonly sessions = new Map<string, Session<B>>();
  private readonly timer: NodeJS.Timeout;
  private readonly idleMs: number;
  private readonly maxSessions: number;
  /** Requests waiting for a free session slot. */
  private waiters: (() => void)[] = [];

  constructor(private readonly options: BrowseSessionOptions<B>) {
    this.idleMs = options.idleMs ?? 60_000;
    this.maxSessions = options.maxSessions ?? 16;
    this.timer = setInterval(() => void this.sweep(), Math.max(1000, Math.min(this.idleMs, 10_000)));
    this.timer.unref();
  }

  /**
   * Runs `work` with the point's browser; the session stays open while any work runs. A session whose browser
   * failed (its worker crashed or hung) is dropped, and the next request opens a new one.
   */
  async use<T>(pointId: string, work: (browser: B) => Promise<T>): Promise<T> {
    let session = this.sessions.get(pointId);
    if (session && failureOf(session)) {
      this.drop(pointId, session);
      session = undefined;
    }
    if (!session) session = await this.start(pointId);
    session.users++;
    try {
      return await work(await session.browser);
    } finally {
      session.users--;
      session.lastUsed = Date.now();
      if (failureOf(session)) this.drop(pointId, session);
      this.wakeOne();
    }
  }

  /** Number of open sessions (for tests and status). */
  get size(): number {
    return this.sessions.size;
  }

  /** Closes sessions idle for longer than the idle time (all idle ones when `all`) and failed ones not in use. */
  async sweep(all = false): Promise<void> {
    const now = Date.now();
    const closing: Promise<void>[] = [];
    for (const [id, s] of this.sessions) {
      if (s.users === 0 && (all || now - s.lastUsed >= this.idleMs || failureOf(s))) closing.push(this.drop(id, s));
    }
    await Promise.all(closing);
  }

  async shutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.sweep(true);
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** A new session for the point, once there is room for it. */
  private async start(pointId: string): Promise<Session<B>> {
    for (;;) {
      await this.evictOverflow();
      const existing = this.sessions.get(pointId); // opened by another request while this one waited
      if (existing && !failureOf(existing)) return existing;
      if (this.sessions.size < this.maxSessions) break;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
    const session: Session<B> = { browser: this.options.open(pointId), users: 0, lastUsed: Date.now() };
    this.sessions.set(pointId, session);
    session.browser.then(
      (b) => (session.opened = b),
      () => {
        if (this.sessions.get(pointId) === session) this.sessions.delete(pointId);
        this.wakeOne();
      },
    );
    return session;
  }

  /** Closes the longest-idle sessions while the cap is reached. */
  private async evictOverflow(): Promise<void> {
    const idle = [...this.sessions].filter(([, s]) => s.users === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    while (this.sessions.size >= this.maxSessions && idle.length) {
      const [id, s] = idle.shift()!;
      await this.drop(id, s);
    }
  }

  private drop(id: string, s: Session<B>): Promise<void> {
    if (this.sessions.get(id) === s) this.sessions.delete(id);
    return s.browser.then((b) => b.close(), () => undefined);
  }

  private wakeOne(): void {
    this.waiters.shift()?.();
  }
}

function failureOf(s: Session<BrowseView>): Error | null {
  return (s.opened as MaybeFailing | undefined)?.failure ?? null;
}
