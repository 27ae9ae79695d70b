import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { APP_CONFIG, ConfigError, loadS3Config, type AppConfig } from '@vmkeep/config';
import { VmkeepError } from '@vmkeep/contracts';
import {
  PolicyEntity,
  RepositoryEntity,
  RestorePointEntity,
  SecretBox,
  type RepositoryS3Settings,
} from '@vmkeep/persistence';
import {
  PassphraseRequiredError,
  Repository,
  RepositoryError,
  RepositoryNotEmptyError,
  RepositoryNotFoundError,
  WrongPassphraseError,
  closeSharedChunkWorkers,
  parseRepositoryLocation,
  type RuntimeOptions,
} from '@vmkeep/repository';
import { IsNull, type Repository as OrmRepository } from 'typeorm';
import { importPoints, type ImportReport } from './import-points';
import { installPointRepositoryOpener, type PointLocation } from './point-repositories';
import { RepositoryResolver, type BackupTarget } from './repository-resolver';

/** Name of the repository the appliance creates from VMKEEP_REPOSITORY on first start. */
export const DEFAULT_REPOSITORY_NAME = 'default';

/** S3 connection given with a new or attached repository; unset fields come from the appliance's S3 settings. */
export interface RepositoryS3Input {
  endpoint?: string;
  region?: string;
  forcePathStyle?: boolean;
  accessKeyId?: string;
  secretAccessKey?: string;
  sessionToken?: string;
}

export interface RepositoryInput {
  name: string;
  /** Absolute folder path on the appliance, or `s3://BUCKET/PREFIX`. */
  location: string;
  /** create: encrypts the new repository; attach: opens an encrypted one. Never stored in clear, never returned. */
  passphrase?: string;
  s3?: RepositoryS3Input;
}

/** A repository as the API shows it: no passphrase, no S3 secret key. */
export interface RepositoryView {
  id: string;
  name: string;
  location: string;
  kind: 'folder' | 's3';
  encrypted: boolean;
  isDefault: boolean;
  s3: RepositoryS3Settings | null;
  /** Restore points recorded in this appliance's database for the repository. */
  pointCount: number;
  /** Bytes those points added to the repository (compressed new chunks; 0 for imported points). */
  storedBytes: number;
  createdAt: Date;
}

export interface AttachResult extends ImportReport {
  repository: RepositoryView;
}

const invalid = (message: string) => new VmkeepError(message, 'invalid');
const conflict = (message: string) => new VmkeepError(message, 'conflict');

/**
 * The appliance's repositories (folders and S3 prefixes, encrypted or not): creates the default one on first
 * start, opens each repository once per process with its sealed passphrase and caches it, creates and attaches
 * repositories (importing an attached repository's points) and removes rows (never data). Also installs
 * itself as the process's `openPointRepository` registry, so every restore path opens points through it.
 */
@Injectable()
export class RepositoriesService extends RepositoryResolver implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger(RepositoriesService.name);
  private readonly opened = new Map<string, Promise<Repository>>();
  private uninstall?: () => void;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @InjectRepository(RepositoryEntity) private readonly rows: OrmRepository<RepositoryEntity>,
    @InjectRepository(RestorePointEntity) private readonly points: OrmRepository<RestorePointEntity>,
    @InjectRepository(PolicyEntity) private readonly policies: OrmRepository<PolicyEntity>,
    private readonly secrets: SecretBox,
  ) {
    super();
  }

  async onModuleInit(): Promise<void> {
    this.uninstall = installPointRepositoryOpener((point) => this.openForPoint(point));
    await this.ensureDefault();
  }

  async onApplicationShutdown(): Promise<void> {
    this.uninstall?.();
    const opened = [...this.opened.values()];
    this.opened.clear();
    await Promise.allSettled(opened.map(async (p) => (await p).close()));
    await closeSharedChunkWorkers();
  }

  /**
   * The default repository row; on first start it is created from VMKEEP_REPOSITORY, encrypted when
   * VMKEEP_REPOSITORY_PASSPHRASE is set (the folder itself is initialised by its first open, as before).
   * Restore points written before repositories were rows (same folder, no repositoryId) are adopted by it.
   * Safe when the API and workers start at once.
   */
  async ensureDefault(): Promise<RepositoryEntity> {
    const existing = await this.rows.findOneBy({ isDefault: true });
    if (existing) return existing;
    const location = this.config.repositoryPath;
    const passphrase = this.config.repositoryPassphrase;
    let row: RepositoryEntity;
    try {
      row = await this.rows.save(
        this.rows.create({
          name: DEFAULT_REPOSITORY_NAME,
          location,
          encrypted: passphrase !== undefined,
          passphraseSealed: passphrase !== undefined ? this.secrets.seal(passphrase) : null,
          s3: null,
          s3SecretSealed: null,
          isDefault: true,
        }),
      );
    } catch (err) {
      const other = await this.rows.findOneBy({ isDefault: true }); // another process created it first
      if (!other) throw err;
      row = other;
    }
    await this.points.update({ repositoryId: IsNull(), repositoryPath: location }, { repositoryId: row.id });
    return row;
  }

  async list(): Promise<RepositoryView[]> {
    const rows = await this.rows.find({ order: { createdAt: 'ASC', name: 'ASC' } });
    const totals = await this.points
      .createQueryBuilder('p')
      .select('p.repositoryId', 'repositoryId')
      .addSelect('COUNT(*)', 'count')
      .addSelect('SUM(p.storedBytes)', 'bytes')
      .where('p.repositoryId IS NOT NULL')
      .groupBy('p.repositoryId')
      .getRawMany<{ repositoryId: string; count: string | number; bytes: string | number | null }>();
    const byId = new Map(totals.map((t) => [t.repositoryId, { pointCount: Number(t.count), storedBytes: Number(t.bytes ?? 0) }]));
    return rows.map((r) => view(r, byId.get(r.id)));
  }

  async get(id: string): Promise<RepositoryView> {
    const row = await this.row(id);
    const pointCount = await this.points.countBy({ repositoryId: id });
    const storedBytes = Number((await this.points.sum('storedBytes', { repositoryId: id })) ?? 0);
    return view(row, { pointCount, storedBytes });
  }

  /** Initialises a new repository (encrypted when a passphrase is given) and registers it. */
  async create(input: RepositoryInput): Promise<RepositoryView> {
    const { location, s3 } = await this.checkNew(input);
    if (input.passphrase !== undefined && input.passphrase.length < 8) {
      throw invalid('passphrase must be at least 8 characters long');
    }
    const runtime = this.runtimeFor(s3?.settings ?? null, s3?.secret ?? null, input.passphrase);
    let repo: Repository;
    try {
      repo = await Repository.init(location, { chunkSize: this.config.chunkSize, encrypt: input.passphrase !== undefined }, runtime);
    } catch (err) {
      if (err instanceof RepositoryNotEmptyError) {
        throw conflict(`${location} is not empty: to use an existing repository, attach it (POST /api/repositories/attach)`);
      }
      throw this.storageProblem(err, location);
    }
    const row = await this.rows.save(this.newRow(input, location, repo, s3));
    this.opened.set(row.id, Promise.resolve(repo));
    return view(row, { pointCount: 0, storedBytes: 0 });
  }

  /**
   * Registers an existing repository after proving the passphrase opens it, and imports every restore point of
   * its manifests (VMs whose host is not registered become detached entries). A wrong passphrase, or a location
   * holding no repository, changes nothing.
   */
  async attach(input: RepositoryInput): Promise<AttachResult> {
    const { location, s3 } = await this.checkNew(input);
    const runtime = this.runtimeFor(s3?.settings ?? null, s3?.secret ?? null, input.passphrase);
    let repo: Repository;
    try {
      repo = await Repository.open(location, runtime);
    } catch (err) {
      if (err instanceof WrongPassphraseError) throw invalid(`wrong passphrase for the repository at ${location}`);
      if (err instanceof PassphraseRequiredError) throw invalid(`the repository at ${location} is encrypted: give its passphrase`);
      if (err instanceof RepositoryNotFoundError) throw invalid(`there is no repository at ${location}`);
      throw this.storageProblem(err, location);
    }
    try {
      const { row, report } = await this.rows.manager.transaction(async (manager) => {
        const saved = await manager.getRepository(RepositoryEntity).save(this.newRow(input, location, repo, s3));
        return { row: saved, report: await importPoints(manager, this.secrets, saved, repo) };
      });
      this.opened.set(row.id, Promise.resolve(repo));
      const storedBytes = 0;
      return { ...report, repository: view(row, { pointCount: report.imported + report.skipped, storedBytes }) };
    } catch (err) {
      await repo.close().catch(() => undefined);
      throw err;
    }
  }

  /** Removes the registration (the data stays); refused for the default and while points or policies use it. */
  async remove(id: string): Promise<RepositoryEntity> {
    const row = await this.row(id);
    if (row.isDefault) throw conflict(`repository "${row.name}" is the default repository and cannot be removed`);
    const points = await this.points.countBy({ repositoryId: id });
    if (points) throw conflict(`repository "${row.name}" still holds ${points} restore point(s) known to this appliance`);
    const policies = await this.policies.find({ where: { repositoryId: id }, select: { id: true, name: true } });
    if (policies.length) {
      throw conflict(`repository "${row.name}" is the target of policy ${policies.map((p) => `"${p.name}"`).join(', ')}`);
    }
    await this.rows.delete(id);
    const opened = this.opened.get(id);
    this.opened.delete(id);
    await opened?.then((r) => r.close()).catch(() => undefined);
    return row;
  }

  /** Throws not_found unless the repository exists (for references such as a policy's repositoryId). */
  async assertExists(id: string): Promise<void> {
    await this.row(id);
  }

  async forBackup(repositoryId?: string | null): Promise<BackupTarget> {
    const row = repositoryId ? await this.row(repositoryId) : await this.ensureDefault();
    const repository = await this.open(row.id);
    const passphrase = row.passphraseSealed ? this.secrets.open(row.passphraseSealed) : undefined;
    const runtime = this.runtimeFor(row.s3, row.s3SecretSealed, passphrase);
    return { id: row.id, location: row.location, repository, runtime, ...(row.s3 ? {} : { folder: row.location }) };
  }

  /** The repository with its passphrase and S3 settings, opened once per process (callers never close it). */
  open(id: string): Promise<Repository> {
    const cached = this.opened.get(id);
    if (cached) return cached;
    const opening = this.row(id).then((row) => this.openRow(row));
    this.opened.set(id, opening);
    opening.catch(() => {
      if (this.opened.get(id) === opening) this.opened.delete(id); // a failed open is retried next time
    });
    return opening;
  }

  /** The repository of a restore point: by its repositoryId, or for older rows by the recorded location. */
  async openForPoint(point: PointLocation): Promise<Repository> {
    if (point.repositoryId) return this.open(point.repositoryId);
    const row = await this.rows.findOneBy({ location: point.repositoryPath });
    return row ? this.open(row.id) : Repository.open(point.repositoryPath);
  }

  private async row(id: string): Promise<RepositoryEntity> {
    const row = await this.rows.findOneBy({ id });
    if (!row) throw new VmkeepError(`repository ${id} not found`, 'not_found');
    return row;
  }

  private async openRow(row: RepositoryEntity): Promise<Repository> {
    const passphrase = row.passphraseSealed ? this.secrets.open(row.passphraseSealed) : undefined;
    if (row.isDefault && !row.s3) {
      // Created on first use, but only while it holds no recorded point: once points exist, a missing folder is
      // storage gone (an unmounted share, a removed disk), and a fresh empty repository there would hide that.
      const recorded = await this.points.countBy({ repositoryId: row.id });
      const repo = recorded > 0 ? await this.openExisting(row, passphrase, recorded) : await this.openOrInitFolder(row.location, passphrase);
      if (row.encrypted && !repo.encrypted) {
        // The folder existed, unencrypted, before the row (an upgrade): the repository's own config is the truth.
        this.log.warn(`VMKEEP_REPOSITORY_PASSPHRASE is set, but the existing repository ${row.location} is not encrypted: it stays unencrypted`);
        await this.rows.update(row.id, { encrypted: false, passphraseSealed: null });
      }
      return repo;
    }
    return Repository.open(row.location, this.runtimeFor(row.s3, row.s3SecretSealed, passphrase));
  }

  /** The default folder repository once restore points are recorded in it: opened, never created anew. */
  private async openExisting(row: RepositoryEntity, passphrase: string | undefined, recorded: number): Promise<Repository> {
    try {
      return await Repository.open(row.location, passphrase !== undefined ? { passphrase } : {});
    } catch (err) {
      if (err instanceof RepositoryNotFoundError) {
        throw new VmkeepError(
          `the default repository ${row.location} is missing, but ${recorded} restore point(s) are recorded in it: ` +
            'mount or restore its storage (it is not created again while points refer to it)',
          'unavailable',
        );
      }
      throw explainDefaultOpenError(err, row.location);
    }
  }

  /** Opens a folder, initialising it when empty (openOrInit waits for another process initialising it). */
  private async openOrInitFolder(location: string, passphrase: string | undefined): Promise<Repository> {
    const runtime: RuntimeOptions = passphrase ? { passphrase } : {};
    try {
      return await Repository.openOrInit(location, { chunkSize: this.config.chunkSize, encrypt: passphrase !== undefined }, runtime);
    } catch (err) {
      throw explainDefaultOpenError(err, location);
    }
  }

  private runtimeFor(s3: RepositoryS3Settings | null, secretSealed: string | null, passphrase: string | undefined): RuntimeOptions {
    const runtime: RuntimeOptions = passphrase !== undefined ? { passphrase } : {};
    if (!s3) return runtime;
    const secret = secretSealed ? (JSON.parse(this.secrets.open(secretSealed)) as { secretAccessKey: string; sessionToken?: string }) : undefined;
    return {
      ...runtime,
      s3: {
        ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
        region: s3.region,
        forcePathStyle: s3.forcePathStyle,
        ...(s3.accessKeyId && secret ? { credentials: { accessKeyId: s3.accessKeyId, ...secret } } : {}),
      },
    };
  }

  /** Validates name and location of a repository to create or attach; resolves its S3 settings. */
  private async checkNew(input: RepositoryInput): Promise<{ location: string; s3?: { settings: RepositoryS3Settings; secret: string | null } }> {
    const name = input.name.trim();
    if (!name) throw invalid('name must not be empty');
    if (await this.rows.existsBy({ name })) throw conflict(`a repository named "${name}" exists already`);
    let parsed;
    try {
      parsed = parseRepositoryLocation(input.location);
    } catch (err) {
      throw invalid(err instanceof Error ? err.message : String(err));
    }
    if (parsed.kind === 'local' && !/^(\/|file:)/.test(input.location.trim())) {
      throw invalid('location must be an absolute folder path on the appliance or s3://BUCKET/PREFIX');
    }
    const location = parsed.kind === 'local' ? parsed.path : `s3://${parsed.bucket}/${parsed.prefix}`.replace(/\/$/, '');
    if (await this.rows.existsBy({ location })) throw conflict(`the repository at ${location} is registered already`);
    if (parsed.kind === 'local') {
      if (input.s3) throw invalid('s3 settings belong to s3:// locations only');
      return { location };
    }
    return { location, s3: this.s3Settings(input.s3 ?? {}) };
  }

  /** The request's S3 fields over the appliance's own S3 settings (libs/config loadS3Config). */
  private s3Settings(input: RepositoryS3Input): { settings: RepositoryS3Settings; secret: string | null } {
    let base;
    try {
      base = loadS3Config();
    } catch (err) {
      throw invalid(err instanceof ConfigError ? err.message : 'the appliance S3 settings are invalid');
    }
    if ((input.accessKeyId === undefined) !== (input.secretAccessKey === undefined)) {
      throw invalid('s3.accessKeyId and s3.secretAccessKey must be given together');
    }
    const endpoint = input.endpoint ?? base.endpoint;
    const credentials = input.accessKeyId !== undefined
      ? { accessKeyId: input.accessKeyId, secretAccessKey: input.secretAccessKey!, ...(input.sessionToken ? { sessionToken: input.sessionToken } : {}) }
      : base.credentials;
    const settings: RepositoryS3Settings = {
      ...(endpoint ? { endpoint: endpoint.replace(/\/+$/, '') } : {}),
      region: input.region ?? base.region,
      forcePathStyle: input.forcePathStyle ?? (input.endpoint !== undefined ? true : base.forcePathStyle),
      ...(credentials ? { accessKeyId: credentials.accessKeyId } : {}),
    };
    const secret = credentials
      ? this.secrets.seal(JSON.stringify({ secretAccessKey: credentials.secretAccessKey, ...(credentials.sessionToken ? { sessionToken: credentials.sessionToken } : {}) }))
      : null;
    return { settings, secret };
  }

  private newRow(
    input: RepositoryInput,
    location: string,
    repo: Repository,
    s3: { settings: RepositoryS3Settings; secret: string | null } | undefined,
  ): RepositoryEntity {
    return this.rows.create({
      name: input.name.trim(),
      location,
      encrypted: repo.encrypted,
      passphraseSealed: repo.encrypted && input.passphrase !== undefined ? this.secrets.seal(input.passphrase) : null,
      s3: s3?.settings ?? null,
      s3SecretSealed: s3?.secret ?? null,
      isDefault: false,
    });
  }

  /** A storage failure while creating or attaching, as a 400 naming the location (no secrets in repository errors). */
  private storageProblem(err: unknown, location: string): Error {
    if (err instanceof RepositoryError) return invalid(`repository at ${location}: ${err.message}`);
    if (err instanceof Error && 'code' in err && typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code)) {
      return invalid(`repository at ${location}: ${err.code === 'EACCES' ? 'permission denied' : err.message}`);
    }
    return err instanceof Error ? err : new Error(String(err));
  }
}

function view(row: RepositoryEntity, totals: { pointCount: number; storedBytes: number } = { pointCount: 0, storedBytes: 0 }): RepositoryView {
  return {
    id: row.id,
    name: row.name,
    location: row.location,
    kind: row.s3 ? 's3' : 'folder',
    encrypted: row.encrypted,
    isDefault: row.isDefault,
    s3: row.s3,
    pointCount: totals.pointCount,
    storedBytes: totals.storedBytes,
    createdAt: row.createdAt,
  };
}

/** Passphrase problems of the default repository in terms of the setting that supplies it; other errors as they are. */
function explainDefaultOpenError(err: unknown, location: string): unknown {
  if (err instanceof PassphraseRequiredError) {
    return new VmkeepError(`the repository ${location} is encrypted: set VMKEEP_REPOSITORY_PASSPHRASE`, 'invalid');
  }
  if (err instanceof WrongPassphraseError) {
    return new VmkeepError(`VMKEEP_REPOSITORY_PASSPHRASE does not open the repository ${location}`, 'invalid');
  }
  return err;
}
