/** Open browse sessions of restore points, shared by concurrent requests and closed after a short idle time. */
import { FileBrowser } from './browser';

export interface BrowseSessionOptions {
  /** Opens the browser of a restore point (its disks, volumes and file systems). */
  open: (pointId: string) => Promise<FileBrowser>;
  /** Idle time before a session is closed (default 60 s). */
  idleMs?: number;
  /** Most sessions kept open; the longest-idle one is closed first (default 16). */
  maxSessions?: number;
}

interface Session {
  browser: Promise<FileBrowser>;
  users: number;
  lastUsed: number;
}

export class BrowseSessions {
  private readonly sessions = new Map<string, Session>();
  private readonly timer: NodeJS.Timeout;
  private readonly idleMs: number;
  private readonly maxSessions: number;

  constructor(private readonly options: BrowseSessionOptions) {
    this.idleMs = options.idleMs ?? 60_000;
    this.maxSessions = options.maxSessions ?? 16;
    this.timer = setInterval(() => void this.sweep(), Math.max(1000, Math.min(this.idleMs, 10_000)));
    this.timer.unref();
  }

  /** Runs `work` with the point's browser; the session stays open while any work runs. */
  async use<T>(pointId: string, work: (browser: FileBrowser) => Promise<T>): Promise<T> {
    let session = this.sessions.get(pointId);
    if (!session) {
      session = { browser: this.options.open(pointId), users: 0, lastUsed: Date.now() };
      this.sessions.set(pointId, session);
      const opened = session;
      opened.browser.catch(() => {
        if (this.sessions.get(pointId) === opened) this.sessions.delete(pointId);
      });
      await this.evictOverflow();
    }
    session.users++;
    try {
      return await work(await session.browser);
    } finally {
      session.users--;
      session.lastUsed = Date.now();
    }
  }

  /** Number of open sessions (for tests and status). */
  get size(): number {
    return this.sessions.size;
  }

  /** Closes sessions idle for longer than the idle time (all idle ones when `all`). */
  async sweep(all = false): Promise<void> {
    const now = Date.now();
    const closing: Promise<void>[] = [];
    for (const [id, s] of this.sessions) {
      if (s.users === 0 && (all || now - s.lastUsed >= this.idleMs)) {
        this.sessions.delete(id);
        closing.push(s.browser.then((b) => b.close(), () => undefined));
      }
    }
    await Promise.all(closing);
  }

  private async evictOverflow(): Promise<void> {
    const idle = [...this.sessions].filter(([, s]) => s.users === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed);
    while (this.sessions.size > this.maxSessions && idle.length) {
      const [id, s] = idle.shift()!;
      this.sessions.delete(id);
      await s.browser.then((b) => b.close(), () => undefined);
    }
  }

  async shutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.sweep(true);
  }
}
