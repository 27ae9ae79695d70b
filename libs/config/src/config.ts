import * as path from 'node:path';

/**
 * The one reader of the process environment. Every setting has an embedded default so that a fresh machine
 * runs with SQLite, a local repository folder and a Redis the appliance starts itself.
 */
export interface DatabaseConfig {
  type: 'sqlite' | 'mysql';
  /** SQLite: file path. */
  sqlitePath?: string;
  /** MySQL/MariaDB connection URL (mysql://user:password@host:port/database). */
  url?: string;
}

export interface AppConfig {
  dataDir: string;
  database: DatabaseConfig;
  /** Redis URL; undefined means "start redis-server ourselves on redisSocket". */
  redisUrl?: string;
  redisSocket: string;
  redisServerBin: string;
  repositoryPath: string;
  /**
   * VMKEEP_REPOSITORY_PASSPHRASE: when set, the default repository the appliance creates on first start is
   * encrypted with it (kept sealed in the database afterwards). Never trimmed, never printed.
   */
  repositoryPassphrase?: string;
  chunkSize: number;
  /** 32-byte key that encrypts host credentials at rest; undefined = use/generate dataDir/secret.key. */
  secretKey?: Buffer;
  secretKeyFile: string;
  api: ApiConfig;
  admin: { username: string; password?: string; passwordFile: string };
  worker: WorkerConfig;
  nbd: NbdConfig;
  logLevel: 'error' | 'warn' | 'log' | 'debug' | 'verbose';
  /** VMKEEP_LOG_FORMAT: `text` (Nest's console lines, default) or `json` (one JSON object per line). */
  logFormat: 'text' | 'json';
  /** VMKEEP_METRICS_TOKEN: a bearer token that may read GET /metrics (besides any API token); unset = none. */
  metricsToken?: string;
  webhooks: WebhookConfig;
}

/** Delivery of webhook events by the workers. */
export interface WebhookConfig {
  /** VMKEEP_WEBHOOK_TIMEOUT_MS (default 10000): one HTTP attempt gives up after this. */
  timeoutMs: number;
  /** VMKEEP_WEBHOOK_ATTEMPTS (default 5): attempts per delivery, the first included. */
  attempts: number;
  /** VMKEEP_WEBHOOK_BACKOFF_MS (default 5000): wait before the first retry; it doubles with every further one. */
  backoffMs: number;
}

export interface ApiConfig {
  host: string;
  port: number;
  tokenTtlHours: number;
  /** VMKEEP_API_BODY_LIMIT_KB: largest JSON request body accepted (default 1024 KiB); larger → 413. */
  bodyLimitBytes: number;
  /** VMKEEP_API_CORS_ORIGINS: comma-separated origins allowed to call the API from a browser; empty = CORS off. */
  corsOrigins: string[];
  login: LoginThrottleConfig;
}

/** Brute-force protection of POST /api/auth/login, counted per username and per client address. */
export interface LoginThrottleConfig {
  /** VMKEEP_LOGIN_FREE_FAILURES (default 3): failures allowed before any waiting is imposed. */
  freeFailures: number;
  /** VMKEEP_LOGIN_BACKOFF_MS (default 1000): first wait; it doubles with every further failure. */
  backoffMs: number;
  /** VMKEEP_LOGIN_MAX_FAILURES (default 10): failures of one username that lock it out for lockoutSeconds. */
  maxFailures: number;
  /** VMKEEP_LOGIN_MAX_FAILURES_PER_ADDRESS (default 50): the same for one client address. */
  maxFailuresPerAddress: number;
  /** VMKEEP_LOGIN_LOCKOUT_SECONDS (default 900): lockout length; counts are also forgotten after this quiet time. */
  lockoutSeconds: number;
}

export interface WorkerConfig {
  /** Backup jobs one worker process runs at once. */
  concurrency: number;
  /** How often the worker retries removing snapshots left by unreachable hosts. */
  snapshotCleanupSeconds: number;
  /** BullMQ lockDuration: a job whose worker stopped renewing its lock for this long counts as stalled. */
  lockMs: number;
  /** BullMQ stalledInterval: how often workers look for stalled jobs and hand them out again. */
  stalledIntervalMs: number;
}

/** The NBD server of instant restore. */
export interface NbdConfig {
  /** Listen address: VMKEEP_NBD_HOST (default 127.0.0.1). Also the host of the nbd:// URLs handed out. */
  host: string;
  /** VMKEEP_NBD_PORT (default 10809, the IANA NBD port). */
  port: number;
  /** VMKEEP_NBD_ALLOW: comma-separated client IPs/CIDR ranges; empty = any client that knows a session token. */
  allow: string[];
  /** Copy-on-write overlays of writable sessions: <data>/instant. */
  scratchDir: string;
  /** Where "migrate to production" writes merged disks: <data>/migrated. */
  migrateDir: string;
}

export interface CliConfig {
  url: string;
  token?: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ['error', 'warn', 'log', 'debug', 'verbose'] as const;
const MIN_CHUNK = 256 * 1024;
const MAX_CHUNK = 8 * 1024 * 1024;
/** BullMQ's own defaults for lockDuration and stalledInterval. */
const BULLMQ_LOCK_MS = 30_000;
const BULLMQ_STALLED_INTERVAL_MS = 30_000;
const HOUR_MS = 3_600_000;

export function loadConfig(env: Env = process.env, cwd = process.cwd()): AppConfig {
  const problems: string[] = [];
  const str = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const int = (name: string, def: number, min: number, max: number): number => {
    const raw = str(name);
    if (raw === undefined) return def;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`${name} must be an integer between ${min} and ${max} (got "${raw}")`);
      return def;
    }
    return n;
  };

  const dataDir = path.resolve(cwd, str('VMKEEP_DATA_DIR') ?? 'data');

  let database: DatabaseConfig;
  const dbUrl = str('DATABASE_URL');
  if (dbUrl === undefined) {
    database = { type: 'sqlite', sqlitePath: path.join(dataDir, 'vmkeep.sqlite') };
  } else if (dbUrl.startsWith('sqlite:')) {
    database = { type: 'sqlite', sqlitePath: path.resolve(cwd, dbUrl.slice('sqlite:'.length)) };
  } else if (/^(mysql|mariadb):\/\//.test(dbUrl)) {
    database = { type: 'mysql', url: dbUrl.replace(/^mariadb:/, 'mysql:') };
  } else {
    problems.push('DATABASE_URL must start with mysql://, mariadb:// or sqlite:');
    database = { type: 'sqlite', sqlitePath: path.join(dataDir, 'vmkeep.sqlite') };
  }

  const redisUrl = str('REDIS_URL');
  if (redisUrl !== undefined && !/^(redis|rediss|unix):/.test(redisUrl)) {
    problems.push('REDIS_URL must start with redis://, rediss:// or unix:');
  }

  const chunkSize = int('VMKEEP_CHUNK_SIZE', 1024 * 1024, MIN_CHUNK, MAX_CHUNK);
  if ((chunkSize & (chunkSize - 1)) !== 0) problems.push('VMKEEP_CHUNK_SIZE must be a power of two');

  let secretKey: Buffer | undefined;
  const rawKey = str('VMKEEP_SECRET_KEY');
  if (rawKey !== undefined) {
    secretKey = /^[0-9a-fA-F]{64}$/.test(rawKey) ? Buffer.from(rawKey, 'hex') : Buffer.from(rawKey, 'base64');
    if (secretKey.length !== 32) problems.push('VMKEEP_SECRET_KEY must be 32 bytes (64 hex digits or base64)');
  }

  const logLevel = (str('VMKEEP_LOG_LEVEL') ?? 'log') as AppConfig['logLevel'];
  if (!LOG_LEVELS.includes(logLevel)) problems.push(`VMKEEP_LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}`);
  const logFormat = (str('VMKEEP_LOG_FORMAT') ?? 'text') as AppConfig['logFormat'];
  if (logFormat !== 'text' && logFormat !== 'json') problems.push('VMKEEP_LOG_FORMAT must be text or json');
  const metricsToken = str('VMKEEP_METRICS_TOKEN');
  if (metricsToken !== undefined && metricsToken.length < 16) problems.push('VMKEEP_METRICS_TOKEN must be at least 16 characters');

  const config: AppConfig = {
    dataDir,
    database,
    redisUrl,
    redisSocket: path.join(dataDir, 'redis.sock'),
    redisServerBin: str('VMKEEP_REDIS_SERVER') ?? 'redis-server',
    repositoryPath: path.resolve(cwd, str('VMKEEP_REPOSITORY') ?? path.join(dataDir, 'repository')),
    ...(env.VMKEEP_REPOSITORY_PASSPHRASE ? { repositoryPassphrase: env.VMKEEP_REPOSITORY_PASSPHRASE } : {}),
    chunkSize,
    secretKey,
    secretKeyFile: path.join(dataDir, 'secret.key'),
    api: {
      host: str('VMKEEP_API_HOST') ?? '127.0.0.1',
      port: int('VMKEEP_API_PORT', 8080, 0, 65535),
      tokenTtlHours: int('VMKEEP_TOKEN_TTL_HOURS', 12, 1, 24 * 365),
      bodyLimitBytes: int('VMKEEP_API_BODY_LIMIT_KB', 1024, 1, 1024 * 1024) * 1024,
      corsOrigins: (str('VMKEEP_API_CORS_ORIGINS') ?? '').split(',').map((s) => s.trim()).filter(Boolean),
      login: {
        freeFailures: int('VMKEEP_LOGIN_FREE_FAILURES', 3, 0, 1000),
        backoffMs: int('VMKEEP_LOGIN_BACKOFF_MS', 1000, 0, HOUR_MS),
        maxFailures: int('VMKEEP_LOGIN_MAX_FAILURES', 10, 1, 100000),
        maxFailuresPerAddress: int('VMKEEP_LOGIN_MAX_FAILURES_PER_ADDRESS', 50, 1, 1000000),
        lockoutSeconds: int('VMKEEP_LOGIN_LOCKOUT_SECONDS', 900, 1, 7 * 86400),
      },
    },
    admin: {
      username: str('VMKEEP_ADMIN_USER') ?? 'admin',
      password: str('VMKEEP_ADMIN_PASSWORD'),
      passwordFile: path.join(dataDir, 'admin-password'),
    },
    worker: {
      concurrency: int('VMKEEP_WORKER_CONCURRENCY', 2, 1, 64),
      snapshotCleanupSeconds: int('VMKEEP_SNAPSHOT_CLEANUP_SECONDS', 60, 1, 86400),
      lockMs: int('VMKEEP_WORKER_LOCK_MS', BULLMQ_LOCK_MS, 1000, HOUR_MS),
      stalledIntervalMs: int('VMKEEP_WORKER_STALLED_INTERVAL_MS', BULLMQ_STALLED_INTERVAL_MS, 500, HOUR_MS),
    },
    nbd: {
      host: str('VMKEEP_NBD_HOST') ?? '127.0.0.1',
      port: int('VMKEEP_NBD_PORT', 10809, 0, 65535),
      allow: (str('VMKEEP_NBD_ALLOW') ?? '').split(',').map((s) => s.trim()).filter(Boolean),
      scratchDir: path.join(dataDir, 'instant'),
      migrateDir: path.join(dataDir, 'migrated'),
    },
    logLevel,
    logFormat,
    metricsToken,
    webhooks: {
      timeoutMs: int('VMKEEP_WEBHOOK_TIMEOUT_MS', 10_000, 100, 300_000),
      attempts: int('VMKEEP_WEBHOOK_ATTEMPTS', 5, 1, 50),
      backoffMs: int('VMKEEP_WEBHOOK_BACKOFF_MS', 5000, 10, HOUR_MS),
    },
  };
  if (problems.length) throw new ConfigError(problems);
  return config;
}

/**
 * The log levels a process enables for the configured level: that level and every more severe one, 'fatal'
 * always included (the names are Nest's LogLevel values).
 */
export function enabledLogLevels(level: AppConfig['logLevel']): Array<'fatal' | AppConfig['logLevel']> {
  return ['fatal', ...LOG_LEVELS.slice(0, LOG_LEVELS.indexOf(level) + 1)];
}

/** Settings of the `vmkeep` CLI: flags win over VMKEEP_URL / VMKEEP_TOKEN. */
export function loadCliConfig(flags: { url?: string; token?: string }, env: Env = process.env): CliConfig {
  const url = flags.url ?? env.VMKEEP_URL ?? 'http://127.0.0.1:8080';
  return { url: url.replace(/\/+$/, ''), token: flags.token ?? env.VMKEEP_TOKEN };
}

/** Settings of `vmkeep repo ...` (works on a repository directly, no server). */
export interface RepoCliConfig {
  /** The repository as named by --repo or VMKEEP_REPO (a path or URL, parsed by the repository library). */
  repo?: string;
  /** VMKEEP_PASSPHRASE: the repository passphrase; undefined = ask interactively. */
  passphrase?: string;
  /** VMKEEP_NEW_PASSPHRASE: the new passphrase of `repo passphrase`; undefined = ask interactively. */
  newPassphrase?: string;
  /** VMKEEP_TARGET_PASSPHRASE: passphrase of the target of `repo copy`; undefined = ask interactively. */
  targetPassphrase?: string;
}

/** The S3-compatible server of `s3://BUCKET/PREFIX` repositories. */
export interface S3Config {
  /** VMKEEP_S3_ENDPOINT: http(s) URL of an S3-compatible server; unset = AWS for the region. */
  endpoint?: string;
  /** AWS_REGION (default us-east-1). */
  region: string;
  /**
   * AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN); unset = the AWS SDK's own chain (profile,
   * instance role). Never printed: messages name the variables only.
   */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** VMKEEP_S3_PATH_STYLE (true/false): `endpoint/bucket/key` URLs; default true with an endpoint, else false. */
  forcePathStyle: boolean;
}

/** Reads the S3 block (only for `s3://` repositories); ConfigError names a bad variable, never a secret's value. */
export function loadS3Config(env: Env = process.env): S3Config {
  const problems: string[] = [];
  const str = (name: string) => (env[name] === undefined || env[name].trim() === '' ? undefined : env[name].trim());
  const endpoint = str('VMKEEP_S3_ENDPOINT');
  if (endpoint !== undefined && !/^https?:\/\/[^\s/]+/.test(endpoint)) problems.push('VMKEEP_S3_ENDPOINT must be an http:// or https:// URL');
  const accessKeyId = str('AWS_ACCESS_KEY_ID');
  const secretAccessKey = env.AWS_SECRET_ACCESS_KEY === '' ? undefined : env.AWS_SECRET_ACCESS_KEY;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    problems.push('AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together');
  }
  const pathStyle = str('VMKEEP_S3_PATH_STYLE')?.toLowerCase();
  if (pathStyle !== undefined && !['true', 'false', '1', '0'].includes(pathStyle)) {
    problems.push('VMKEEP_S3_PATH_STYLE must be true or false');
  }
  if (problems.length) throw new ConfigError(problems);
  const sessionToken = str('AWS_SESSION_TOKEN');
  return {
    ...(endpoint !== undefined ? { endpoint: endpoint.replace(/\/+$/, '') } : {}),
    region: str('AWS_REGION') ?? 'us-east-1',
    ...(accessKeyId !== undefined && secretAccessKey !== undefined
      ? { credentials: { accessKeyId, secretAccessKey, ...(sessionToken ? { sessionToken } : {}) } }
      : {}),
    forcePathStyle: pathStyle === undefined ? endpoint !== undefined : pathStyle === 'true' || pathStyle === '1',
  };
}

/** Settings of the repository commands: the --repo flag wins over VMKEEP_REPO. Passphrases are never trimmed. */
export function loadRepoCliConfig(flags: { repo?: string }, env: Env = process.env): RepoCliConfig {
  const repo = flags.repo ?? env.VMKEEP_REPO;
  const secret = (v: string | undefined) => (v === undefined || v === '' ? undefined : v);
  return {
    repo: repo === undefined || repo.trim() === '' ? undefined : repo,
    passphrase: secret(env.VMKEEP_PASSPHRASE),
    newPassphrase: secret(env.VMKEEP_NEW_PASSPHRASE),
    targetPassphrase: secret(env.VMKEEP_TARGET_PASSPHRASE),
  };
}
