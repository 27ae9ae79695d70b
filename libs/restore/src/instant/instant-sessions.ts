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
import { NbdServer, newExportToken } from '@vmkeep/nbd';

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
  /** Opens a disk of a restore point; the session closes it. */
  openDisk(pointId: string, diskKey: string | undefined): Promise<{ disk: Disk; diskKey: string }>;
  log?: (message: string) => void;
  /** Length of a "minute" of ttlMinutes; tests shorten it. Default 60 000 ms. */
  minuteMs?: number;
}

export interface StartOptions {
  writable?: boolean;
  ttlMinutes?: number;
}

export interface CloseOptions {
  /** File name (no folders) in the migrate folder; the merged disk is written there. Omitted = discard. */
  migrateTo?: string;
  format?: MigrateFormat;
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
}

export interface CloseResult {
  id: string;
  migrated?: { path: string; format: MigrateFormat; bytes: number };
}

interface Session {
  id: string;
  pointId: string;
  diskKey: string;
  token: string;
  base: Disk;
  overlay?: OverlayDisk;
  createdAt: Date;
  expiresAt: Date;
  timer: NodeJS.Timeout;
  closing?: Promise<CloseResult>;
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
    try {
      if (opts.writable) overlay = await OverlayDisk.create(opened.disk, path.join(this.options.scratchDir, id));
      const token = newExportToken();
      this.server!.addExport(token, overlay ?? opened.disk, {
        readOnly: !overlay,
        description: `restore point ${pointId} disk ${opened.diskKey}`,
      });
      const createdAt = new Date();
      const lifetimeMs = ttl * (this.options.minuteMs ?? 60_000);
      const expiresAt = new Date(createdAt.getTime() + lifetimeMs);
      const timer = setTimeout(() => void this.expire(id), lifetimeMs);
      timer.unref();
      const session: Session = { id, pointId, diskKey: opened.diskKey, token, base: opened.disk, overlay, createdAt, expiresAt, timer };
      this.sessions.set(id, session);
      this.options.log?.(`instant session ${id} started: point ${pointId} disk ${opened.diskKey} ${overlay ? 'writable' : 'read-only'} on port ${port}`);
      return this.view(session);
    } catch (err) {
      await overlay?.close().catch(() => undefined);
      await fsp.rm(path.join(this.options.scratchDir, id), { recursive: true, force: true });
      await opened.disk.close();
      throw err;
    }
  }

  list(): InstantSessionView[] {
    return [...this.sessions.values()].filter((s) => !s.closing).map((s) => this.view(s));
  }

  get(id: string): InstantSessionView {
    return this.view(this.session(id));
  }

  /** Ends the session: disconnects clients, then discards the overlay or writes the merged disk first. */
  close(id: string, opts: CloseOptions = {}): Promise<CloseResult> {
    const session = this.session(id);
    let target: string | undefined;
    if (opts.migrateTo !== undefined) target = this.migrateTarget(opts.migrateTo);
    const format = opts.format ?? 'raw';
    if (!MIGRATE_FORMATS.includes(format)) {
      throw new VmkeepError(`format must be one of ${MIGRATE_FORMATS.join(', ')}`, 'invalid');
    }
    session.closing = this.finish(session, target, format);
    return session.closing;
  }

  /** Closes every session (discarding overlays) and stops the NBD server. */
  async shutdown(): Promise<void> {
    await Promise.allSettled([...this.sessions.values()].map((s) => s.closing ?? this.finish(s, undefined, 'raw')));
    await this.server?.close();
    this.server = undefined;
    this.listening = undefined;
  }

  private async finish(session: Session, target: string | undefined, format: MigrateFormat): Promise<CloseResult> {
    clearTimeout(session.timer);
    this.server?.removeExport(session.token);
    try {
      let migrated: CloseResult['migrated'];
      if (target) {
        await fsp.mkdir(path.dirname(target), { recursive: true });
        const write = (disk: Disk) => writeImage(disk, target, format);
        const result = session.overlay ? await session.overlay.mergedTo(write) : await write(session.base);
        migrated = { path: target, format, bytes: result.bytesWritten };
      }
      this.options.log?.(`instant session ${session.id} closed${migrated ? `; merged disk written to ${target}` : ''}`);
      return { id: session.id, migrated };
    } finally {
      this.sessions.delete(session.id);
      await session.overlay?.close().catch(() => undefined);
      await fsp.rm(path.join(this.options.scratchDir, session.id), { recursive: true, force: true });
      await session.base.close().catch(() => undefined);
    }
  }

  private async expire(id: string): Promise<void> {
    const session = this.sessions.get(id);
    if (!session || session.closing) return;
    this.options.log?.(`instant session ${id} expired`);
    session.closing = this.finish(session, undefined, 'raw');
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
    if (!session || session.closing) throw new VmkeepError(`instant session ${id} not found`, 'not_found');
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
    const host = this.options.host.includes(':') ? `[${this.options.host}]` : this.options.host;
    return {
      id: s.id,
      pointId: s.pointId,
      diskKey: s.diskKey,
      writable: !!s.overlay,
      url: `nbd://${host}:${port}/${s.token}`,
      sizeBytes: s.base.size,
      overlayBytes: s.overlay?.overlayBytes ?? 0,
      clients: this.server!.clientsOf(s.token),
      createdAt: s.createdAt.toISOString(),
      expiresAt: s.expiresAt.toISOString(),
    };
  }
}
