import * as os from 'node:os';
import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { In, MoreThan, type Repository as TypeOrmRepository } from 'typeorm';
import { APP_CONFIG, type AppConfig } from '@vmkeep/config';
import { VmkeepError } from '@vmkeep/contracts';
import { HostsService } from '@vmkeep/inventory';
import { InstantSessionEntity, RestorePointEntity, type InstantSessionState } from '@vmkeep/persistence';
import { openPointRepository } from '@vmkeep/repositories';
import type { VimSession, VsphereSession } from '@vmkeep/vsphere';
import { datastoreDelivery, checkDatastoreTarget, type DatastoreTarget } from './datastore-delivery';
import { InstantSessions, type CloseResult, type InstantSessionView, type MigrateFormat, type SessionEnd, type StartOptions } from './instant-sessions';

/** A session as the API lists it: a live one, or one its API process lost (no URL, no clients). */
export type InstantSessionListing = Omit<InstantSessionView, 'url' | 'state'> & {
  url: string | null;
  state: InstantSessionView['state'] | InstantSessionState;
  endReason: string | null;
};

export interface ServiceCloseOptions {
  migrateTo?: string;
  format?: MigrateFormat;
  /** Upload the merged disk to a datastore of a registered host. */
  datastore?: DatastoreTarget & { hostId: string };
}

/**
 * Instant restore for the API: sessions that serve restore points (by database id) over NBD on the configured
 * address. The exports live in this process; every session also has a row (instant_sessions), so after a restart
 * or crash the sessions this process served are listed as "lost" until their lifetime ends, and their scratch
 * overlays are removed at start.
 */
@Injectable()
export class InstantSessionsService implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('InstantRestore');
  private readonly sessions: InstantSessions;
  /** Rows of this host's API processes; "<hostname>:<pid>" of this one. */
  private readonly hostPrefix = `${os.hostname()}:`;
  private readonly owner = `${this.hostPrefix}${process.pid}`;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    @InjectRepository(RestorePointEntity) private readonly points: TypeOrmRepository<RestorePointEntity>,
    @InjectRepository(InstantSessionEntity) private readonly rows: TypeOrmRepository<InstantSessionEntity>,
    private readonly hosts: HostsService,
  ) {
    this.sessions = new InstantSessions({
      ...config.nbd,
      openDisk: (pointId, diskKey) => this.openDisk(pointId, diskKey),
      log: (message) => this.logger.log(message),
      onStarted: (view) => this.recordStart(view),
      onEnded: (id, how, detail) => this.recordEnd(id, how, detail),
    });
  }

  /**
   * Sessions an API process on this machine left "active" and that no longer runs were lost with it; scratch
   * overlays of sessions this process does not serve go. (Two API processes on one machine would need separate
   * scratch folders: the sweep only keeps this process's sessions.)
   */
  async onApplicationBootstrap(): Promise<void> {
    const now = new Date();
    const mine = (await this.rows.find({ where: { state: 'active' }, select: { id: true, owner: true, expiresAt: true } }))
      .filter((r) => r.owner.startsWith(this.hostPrefix) && r.owner !== this.owner && !alive(Number(r.owner.slice(this.hostPrefix.length))));
    const expired = mine.filter((r) => r.expiresAt <= now).map((r) => r.id);
    const lost = mine.filter((r) => r.expiresAt > now).map((r) => r.id);
    if (expired.length) await this.rows.update({ id: In(expired) }, { state: 'expired', endedAt: now, endReason: 'its lifetime ended while the API was down' });
    if (lost.length) {
      await this.rows.update({ id: In(lost) }, { state: 'lost', endedAt: now, endReason: 'the API process serving it stopped; its writes are gone' });
      this.logger.warn(`${lost.length} instant session(s) were lost when the API stopped; they are listed as "lost" until they expire`);
    }
    await this.sessions.sweepScratch();
  }

  async start(pointId: string, diskKey: string | undefined, opts: StartOptions): Promise<InstantSessionListing> {
    return { ...(await this.sessions.start(pointId, diskKey, opts)), endReason: null };
  }

  /** Live sessions, then lost ones whose lifetime has not ended. */
  async list(): Promise<InstantSessionListing[]> {
    const live = this.sessions.list().map((s) => ({ ...s, endReason: null }));
    const lost = await this.rows.find({ where: { state: 'lost', expiresAt: MoreThan(new Date()) }, order: { createdAt: 'ASC' } });
    return [...live, ...lost.map(listing)];
  }

  async get(id: string): Promise<InstantSessionListing> {
    if (this.sessions.has(id)) return { ...this.sessions.get(id), endReason: null };
    const row = await this.rows.findOneBy({ id });
    if (!row) throw new VmkeepError(`instant session ${id} not found`, 'not_found');
    return listing(row);
  }

  /**
   * Closes a live session (see InstantSessions.close; with `datastore` the merged disk is uploaded). A lost
   * session can only be dismissed: its writes are gone.
   */
  async close(id: string, opts: ServiceCloseOptions): Promise<CloseResult> {
    if (!this.sessions.has(id)) {
      const row = await this.rows.findOneBy({ id });
      if (row?.state !== 'lost') throw new VmkeepError(`instant session ${id} not found`, 'not_found');
      if (opts.migrateTo !== undefined || opts.datastore) {
        throw new VmkeepError(`instant session ${id} was lost when its API process stopped: there is nothing to migrate`, 'conflict');
      }
      await this.rows.update({ id, state: 'lost' }, { state: 'closed', endReason: `${row.endReason ?? 'lost'}; dismissed` });
      return { id };
    }
    if (!opts.datastore) return this.sessions.close(id, { migrateTo: opts.migrateTo, format: opts.format });
    if (opts.migrateTo !== undefined) throw new VmkeepError('migrate to a file or to a datastore, not both', 'invalid');
    const { hostId, ...target } = opts.datastore;
    checkDatastoreTarget(target);
    this.sessions.get(id); // not found before logging in
    const session = await this.hosts.sessionFor(hostId);
    if (!isVim(session)) {
      await session.logout().catch(() => undefined);
      throw new VmkeepError('this host connection cannot upload to datastores', 'invalid');
    }
    try {
      return await this.sessions.close(id, { deliver: datastoreDelivery(session, target, () => session.logout().catch(() => undefined)) });
    } catch (err) {
      await session.logout().catch(() => undefined);
      throw err;
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.sessions.shutdown();
  }

  private async recordStart(view: InstantSessionView): Promise<void> {
    await this.rows.insert({
      id: view.id,
      pointId: view.pointId,
      diskKey: view.diskKey,
      writable: view.writable,
      state: 'active',
      owner: this.owner,
      sizeBytes: view.sizeBytes,
      createdAt: new Date(view.createdAt),
      expiresAt: new Date(view.expiresAt),
      endedAt: null,
      endReason: null,
    });
  }

  private async recordEnd(id: string, how: SessionEnd, detail?: string): Promise<void> {
    const reason = how === 'lost' ? 'the API stopped; its writes were discarded' : (detail ?? null);
    await this.rows.update({ id, state: 'active' }, { state: how, endedAt: new Date(), endReason: reason });
  }

  private async openDisk(pointId: string, diskKey: string | undefined) {
    const point = await this.points.findOneBy({ id: pointId });
    if (!point) throw new VmkeepError(`restore point ${pointId} not found`, 'not_found');
    const entry = diskKey === undefined ? point.disks[0] : point.disks.find((d) => d.key === diskKey);
    if (!entry) {
      const keys = point.disks.map((d) => d.key).join(', ');
      throw new VmkeepError(`restore point ${pointId} has no disk ${JSON.stringify(diskKey ?? '')} (it has: ${keys})`, 'not_found');
    }
    const repository = await openPointRepository(point);
    return { disk: await repository.openDisk(point.repositoryPointId, entry.key), diskKey: entry.key };
  }
}

function listing(row: InstantSessionEntity): InstantSessionListing {
  return {
    id: row.id,
    pointId: row.pointId,
    diskKey: row.diskKey,
    writable: row.writable,
    url: null,
    sizeBytes: row.sizeBytes,
    overlayBytes: 0,
    clients: 0,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt.toISOString(),
    state: row.state,
    endReason: row.endReason,
  };
}

function isVim(session: VsphereSession): session is VimSession {
  return typeof (session as Partial<VimSession>).makeDirectory === 'function' && typeof (session as Partial<VimSession>).uploadFile === 'function';
}

/** Whether a process of this machine runs (signal 0 only checks; EPERM means it runs as another user). */
function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
