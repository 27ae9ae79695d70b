/**
 * Instant-restore sessions without Nest: each session exports one disk of a restore point over NBD, read-only or
 * writable through a copy-on-write overlay in a scratch folder, until it is closed or its lifetime ends. On close
 * the overlay is discarded or the merged disk is written out ("migrate to production").
 */
import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { VmkeepError } from '@vmkeep/contracts';
import { OverlayDisk, type Disk } from '@vmkeep/disk';
import { writeImage, type OutputFormat } from '@vmkeep/disk-formats';
import { NbdServer, nbdUrl, newExportToken, openExportCache, type ScratchCache, type ScratchCacheOptions, type ScratchCacheStats } from '@vmkeep/nbd';

/** Formats "migrate to production" writes. */
export const MIGRATE_FORMATS = ['raw', 'vmdk-stream'] as const satisfies readonly OutputFormat[];
export type MigrateFormat = (typeof MIGRATE_FORMATS)[number];

export const DEFAULT_TTL_MINUTES = 60;
export const MAX_TTL_MINUTES = 7 * 24 * 60;

export interface InstantSessionsOptions {
  host: string;
  port: number;
  allow: string[];
  scratchDir: string;
  migrateDir: string;
  /**
   * Decoded-block cache of each session on scratch storage (`<scratchDir>/<id>/cache.data`, removed with the
   * session): limits of the space it may take. `false` keeps decoded blocks in memory only. Default: on, no limit
   * beyond leaving 256 MiB free.
   */
  diskCache?: Pick<ScratchCacheOptions, 'maxBytes' | 'reserveBytes'> | false;
  /** Opens a disk of a restore point; the session closes it. */
  openDisk(pointId: string, diskKey: string | undefined): Promise<{ disk: Disk; diskKey: string }>;
  log?: (message: string) => void;
  /** Length of a "minute" of ttlMinutes; tests shorten it. Default 60 000 ms. */
  minuteMs?: number;
  /** Told when a session starts (e.g. to keep a row of it). Errors abort the start. */
  onStarted?: (session: InstantSessionView) => Promise<void>;
  /**
   * Told when a session has ended: closed by a caller, expired, or lost (discarded by shutdown). `detail` says where
   * the merged disk went. Errors are logged, never thrown.
   */
  onEnded?: (id: string, how: SessionEnd, detail?: string) => Promise<void>;
}

export type SessionEnd = 'closed' | 'expired' | 'lost';

export interface StartOptions {
  writable?: boolean;
  ttlMinutes?: number;
  /** Read the whole point into the session's disk cache in the background (client reads go first). */
  hydrate?: boolean;
}

export interface CloseOptions {
  /** File name (no folders) in the migrate folder; the merged disk is written there. Omitted = discard. */
  migrateTo?: string;
  format?: MigrateFormat;
  /**
   * Migrate to production somewhere else (e.g. a datastore): gets the merged disk, reports its bytes as they
   * go, and says where the disk went. Excludes migrateTo.
   */
  deliver?: Deliver;
}

/** Writes the merged disk somewhere; `target` names it for progress and messages before it starts. */
export interface Deliver {
  target: string;
  run(disk: Disk, onBytes: (bytes: number) => void): Promise<{ path: string; format: string; bytes: number }>;
}

/** Progress of a "migrate to production" while the session closes. */
export interface MigrationProgress {
  target: string;
  bytesDone: number;
  bytesTotal: number;
}

/** What callers see of a session. The URL holds the access token: show it only to who started the session. */
export interface InstantSessionView {
  id: string;
  pointId: string;
  diskKey: string;
  writable: boolean;
  url: string;
  sizeBytes: number;
  /** Bytes written into the overlay so far. */
  overlayBytes: number;
  clients: number;
  createdAt: string;
  expiresAt: string;
  /** closing: clients are gone and the merged disk is being written (see migration). */
  state: 'active' | 'closing';
  migration?: MigrationProgress;
  /** The session's decoded-block cache on scratch storage (absent when blocks are kept in memory only). */
  cache?: ScratchCacheStats;
}

export interface CloseResult {
  id: string;
  /** Where the merged disk went: a file (format raw / vmdk-stream) or a datastore ("[ds] folder/x.vmdk", vmfs). */
  migrated?: { path: string; format: string; bytes: number };
}

interface Session {
  id: string;
  pointId: string;
  diskKey: string;
  token: string;
  base: Disk;
  /** `base` behind the decoded-chunk cache: what clients and the overlay read. */
  served: Disk;
  scratch?: ScratchCache;
  overlay?: OverlayDisk;
  createdAt: Date;
  expiresAt: Date;
  timer: NodeJS.Timeout;
  closing?: Promise<CloseResult>;
  migration?: MigrationProgress;
}

export class InstantSessions {
  private readonly sessions = new Map<string, Session>();
  private server?: NbdServer;
  private listening?: Promise<{ host: string; port: number }>;

  constructor(private readonly options: InstantSessionsOptions) {}

  async start(pointId: string, diskKey: string | undefined, opts: StartOptions = {}): Promise<InstantSessionView> {
    const ttl = opts.ttlMinutes ?? DEFAULT_TTL_MINUTES;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TTL_MINUTES) {
      throw new VmkeepError(`ttlMinutes must be an integer between 1 and ${MAX_TTL_MINUTES}`, 'invalid');
    }
    const { port } = await this.listen();
    const opened = await this.options.openDisk(pointId, diskKey);
    const id = randomUUID();
    let overlay: OverlayDisk | undefined;
    let served: Disk | undefined;
    try {
      // Every client (and the overlay) reads the point through one cache: on scratch storage, a chunk is decoded
      // at most once per session; without room there, in memory while used.
      const cache = await openExportCache(opened.disk, {
        ...(this.options.diskCache === false ? {} : { ...this.options.diskCache, dir: path.join(this.options.scratchDir, id) }),
        hydrate: opts.hydrate,
        log: (m) => this.options.log?.(`instant session ${id}: ${m}`),
      });
      served = cache.disk;
      if (opts.writable) overlay = await OverlayDisk.create(served, path.join(this.options.scratchDir, id));
      const token = newExportToken();
      this.server!.addExport(token, overlay ?? served, {
        readOnly: !overlay,
        description: `restore point ${pointId} disk ${opened.diskKey}`,
      });
      const createdAt = new Date();
      const lifetimeMs = ttl * (this.options.minuteMs ?? 60_000);
      const expiresAt = new Date(createdAt.getTime() + lifetimeMs);
      const session: Session = {
        id,
        pointId,
        diskKey: opened.diskKey,
        token,
        base: opened.disk,
        served,
        scratch: cache.scratch,
        overlay,
        createdAt,
        expiresAt,
        timer: this.expiryTimer(id, lifetimeMs),
      };
      this.sessions.set(id, session);
      try {
        await this.options.onStarted?.(this.view(session));
      } catch (err) {
        clearTimeout(session.timer);
        this.sessions.delete(id);
        this.server!.removeExport(token);
        throw err;
      }
      this.options.log?.(`instant session ${id} started: point ${pointId} disk ${opened.diskKey} ${overlay ? 'writable' : 'read-only'} on port ${port}`);
      return this.view(session);
    } catch (err) {
      await overlay?.close().catch(() => undefined);
      await served?.close().catch(() => undefined);
      await fsp.rm(path.join(this.options.scratchDir, id), { recursive: true, force: true });
      await opened.disk.close();
      throw err;
    }
  }

  /** Open sessions, including those closing right now (state "closing", with migration progress). */
  list(): InstantSessionView[] {
    return [...this.sessions.values()].map((s) => this.view(s));
  }

  get(id: string): InstantSessionView {
    const session = this.sessions.get(id);
    if (!session) throw new VmkeepError(`instant session ${id} not found`, 'not_found');
    return this.view(session);
  }

  has(id: string): boolean {
    return this.sessions.has(id);
  }

  /**
   * Ends the session: disconnects clients, then discards the overlay, or first writes the merged disk (migrateTo
   * or deliver). When that write fails, the session stays open with its writes and its URL, and the error is thrown.
   */
  close(id: string, opts: CloseOptions = {}): Promise<CloseResult> {
    const session = this.session(id);
    if (opts.migrateTo !== undefined && opts.deliver) throw new VmkeepError('migrate to a file or deliver elsewhere, not both', 'invalid');
    let deliver = opts.deliver;
    if (opts.migrateTo !== undefined) {
      const format = opts.format ?? 'raw';
      if (!MIGRATE_FORMATS.includes(format)) {
        throw new VmkeepError(`format must be one of ${MIGRATE_FORMATS.join(', ')}`, 'invalid');
      }
      deliver = this.fileDelivery(this.migrateTarget(opts.migrateTo), format);
    }
    session.closing = this.finish(session, 'closed', deliver);
    return session.closing;
  }

  /** Closes every session (discarding overlays: they are "lost") and stops the NBD server. */
  async shutdown(): Promise<void> {
    await Promise.allSettled([...this.sessions.values()].map((s) => s.closing ?? (s.closing = this.finish(s, 'lost'))));
    await this.server?.close();
    this.server = undefined;
    this.listening = undefined;
  }

  /** Removes folders in the scratch folder that belong to no open session (overlays of a process that died). */
  async sweepScratch(): Promise<string[]> {
    const entries = await fsp.readdir(this.options.scratchDir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [] as string[];
      throw err;
    });
    const removed: string[] = [];
    for (const name of entries) {
      if (this.sessions.has(name)) continue;
      await fsp.rm(path.join(this.options.scratchDir, name), { recursive: true, force: true });
      removed.push(name);
    }
    if (removed.length) this.options.log?.(`removed ${removed.length} scratch overlay(s) of sessions that no longer run`);
    return removed;
  }

  private async finish(session: Session, how: SessionEnd, deliver?: Deliver): Promise<CloseResult> {
    clearTimeout(session.timer);
    this.server?.removeExport(session.token);
    let migrated: CloseResult['migrated'];
    if (deliver) {
      try {
        migrated = await this.migrate(session, deliver);
      } catch (err) {
        this.reopen(session);
        this.options.log?.(`instant session ${session.id}: migrating to ${deliver.target} failed, the session stays open: ${(err as Error).message}`);
        throw err;
      }
    }
    await session.overlay?.close().catch(() => undefined);
    await session.served.close().catch(() => undefined);
    await fsp.rm(path.join(this.options.scratchDir, session.id), { recursive: true, force: true }).catch(() => undefined);
    await session.base.close().catch(() => undefined);
    this.sessions.delete(session.id);
    this.options.log?.(`instant session ${session.id} ${how}${migrated ? `; merged disk written to ${migrated.path}` : ''}`);
    await this.options.onEnded?.(session.id, how, migrated && `merged disk written to ${migrated.path}`)
      .catch((err: Error) => this.options.log?.(`instant session ${session.id}: recording its end failed: ${err.message}`));
    return { id: session.id, migrated };
  }

  private async migrate(session: Session, deliver: Deliver): Promise<NonNullable<CloseResult['migrated']>> {
    const progress: MigrationProgress = { target: deliver.target, bytesDone: 0, bytesTotal: session.base.size };
    session.migration = progress;
    try {
      const run = (disk: Disk) => deliver.run(disk, (n) => (progress.bytesDone += n));
      return session.overlay ? await session.overlay.mergedTo(run) : await run(session.served);
    } finally {
      session.migration = undefined;
    }
  }

  /** After a failed migration: the export is back under its old name and the lifetime runs on. */
  private reopen(session: Session): void {
    session.closing = undefined;
    this.server?.addExport(session.token, session.overlay ?? session.served, {
      readOnly: !session.overlay,
      description: `restore point ${session.pointId} disk ${session.diskKey}`,
    });
    session.timer = this.expiryTimer(session.id, Math.max(session.expiresAt.getTime() - Date.now(), 1000));
  }

  private fileDelivery(target: string, format: MigrateFormat): Deliver {
    return {
      target,
      run: async (disk, onBytes) => {
        await fsp.mkdir(path.dirname(target), { recursive: true });
        let reported = 0;
        const result = await writeImage(disk, target, format, {
          onProgress: (done) => {
            onBytes(done - reported);
            reported = done;
          },
        });
        return { path: target, format, bytes: result.bytesWritten };
      },
    };
  }

  private expiryTimer(id: string, ms: number): NodeJS.Timeout {
    const timer = setTimeout(() => void this.expire(id), ms);
    timer.unref();
    return timer;
  }

  private async expire(id: string): Promise<void> {
    const session = this.sessions.get(id);
    if (!session || session.closing) return;
    this.options.log?.(`instant session ${id} expired`);
    session.closing = this.finish(session, 'expired');
    await session.closing.catch((err: Error) => this.options.log?.(`instant session ${id}: close failed: ${err.message}`));
  }

  private migrateTarget(name: string): string {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$/.test(name)) {
      throw new VmkeepError('migrateTo must be a plain file name (letters, digits, ".", "_", "-"; no folders)', 'invalid');
    }
    return path.join(this.options.migrateDir, name);
  }

  private session(id: string): Session {
    const session = this.sessions.get(id);
    if (!session) throw new VmkeepError(`instant session ${id} not found`, 'not_found');
    if (session.closing) throw new VmkeepError(`instant session ${id} is closing already`, 'conflict');
    return session;
  }

  private listen(): Promise<{ host: string; port: number }> {
    if (!this.listening) {
      const server = new NbdServer({ host: this.options.host, port: this.options.port, allow: this.options.allow, log: this.options.log });
      this.server = server;
      this.listening = server.listen().catch((err: Error) => {
        this.server = undefined;
        this.listening = undefined;
        throw new VmkeepError(`the NBD server cannot listen on ${this.options.host}:${this.options.port}: ${err.message}`, 'unavailable');
      });
    }
    return this.listening;
  }

  private view(s: Session): InstantSessionView {
    const { port } = this.server!.address();
    return {
      id: s.id,
      pointId: s.pointId,
      diskKey: s.diskKey,
      writable: !!s.overlay,
      url: nbdUrl(this.options.host, port, s.token),
      sizeBytes: s.base.size,
      overlayBytes: s.overlay?.overlayBytes ?? 0,
      clients: this.server!.clientsOf(s.token),
      createdAt: s.createdAt.toISOString(),
      expiresAt: s.expiresAt.toISOString(),
      state: s.closing ? 'closing' : 'active',
      ...(s.migration ? { migration: { ...s.migration } } : {}),
      ...(s.scratch ? { cache: s.scratch.stats() } : {}),
    };
  }
}
