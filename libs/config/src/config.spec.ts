import * as path from 'node:path';
import { ConfigError, enabledLogLevels, loadCliConfig, loadConfig, loadS3Config } from './config';

const CWD = path.join(path.sep, 'srv', 'vmkeep');

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env, CWD);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('runs on embedded defaults: SQLite, local repository, self-started Redis', () => {
    const c = loadConfig({}, CWD);
    const data = path.join(CWD, 'data');
    expect(c.dataDir).toBe(data);
    expect(c.database).toEqual({ type: 'sqlite', sqlitePath: path.join(data, 'vmkeep.sqlite') });
    expect(c.redisUrl).toBeUndefined();
    expect(c.redisSocket).toBe(path.join(data, 'redis.sock'));
    expect(c.redisServerBin).toBe('redis-server');
    expect(c.repositoryPath).toBe(path.join(data, 'repository'));
    expect(c.chunkSize).toBe(1024 * 1024);
    expect(c.secretKey).toBeUndefined();
    expect(c.secretKeyFile).toBe(path.join(data, 'secret.key'));
    expect(c.api).toEqual({
      host: '127.0.0.1',
      port: 8080,
      tokenTtlHours: 12,
      bodyLimitBytes: 1024 * 1024,
      corsOrigins: [],
      login: { freeFailures: 3, backoffMs: 1000, maxFailures: 10, maxFailuresPerAddress: 50, lockoutSeconds: 900 },
    });
    expect(c.admin).toEqual({ username: 'admin', password: undefined, passwordFile: path.join(data, 'admin-password') });
    expect(c.worker).toEqual({ concurrency: 2, snapshotCleanupSeconds: 60, lockMs: 30_000, stalledIntervalMs: 30_000 });
    expect(c.logLevel).toBe('log');
  });

  it('reads every variable', () => {
    const c = loadConfig(
      {
        VMKEEP_DATA_DIR: '/var/lib/vmkeep',
        REDIS_URL: 'redis://cache:6379/2',
        VMKEEP_REDIS_SERVER: '/opt/redis/bin/redis-server',
        VMKEEP_REPOSITORY: 'backups',
        VMKEEP_CHUNK_SIZE: String(4 * 1024 * 1024),
        VMKEEP_API_HOST: '0.0.0.0',
        VMKEEP_API_PORT: '9443',
        VMKEEP_TOKEN_TTL_HOURS: '48',
        VMKEEP_API_BODY_LIMIT_KB: '64',
        VMKEEP_API_CORS_ORIGINS: 'https://ui.example, https://ops.example',
        VMKEEP_LOGIN_FREE_FAILURES: '1',
        VMKEEP_LOGIN_BACKOFF_MS: '200',
        VMKEEP_LOGIN_MAX_FAILURES: '4',
        VMKEEP_LOGIN_MAX_FAILURES_PER_ADDRESS: '8',
        VMKEEP_LOGIN_LOCKOUT_SECONDS: '60',
        VMKEEP_ADMIN_USER: 'root',
        VMKEEP_ADMIN_PASSWORD: ' s3cret ',
        VMKEEP_WORKER_CONCURRENCY: '8',
        VMKEEP_SNAPSHOT_CLEANUP_SECONDS: '5',
        VMKEEP_WORKER_LOCK_MS: '4000',
        VMKEEP_WORKER_STALLED_INTERVAL_MS: '750',
        VMKEEP_LOG_LEVEL: 'debug',
      },
      CWD,
    );
    expect(c.dataDir).toBe('/var/lib/vmkeep');
    expect(c.database.sqlitePath).toBe('/var/lib/vmkeep/vmkeep.sqlite');
    expect(c.redisUrl).toBe('redis://cache:6379/2');
    expect(c.redisServerBin).toBe('/opt/redis/bin/redis-server');
    expect(c.repositoryPath).toBe(path.join(CWD, 'backups'));
    expect(c.chunkSize).toBe(4 * 1024 * 1024);
    expect(c.api).toEqual({
      host: '0.0.0.0',
      port: 9443,
      tokenTtlHours: 48,
      bodyLimitBytes: 64 * 1024,
      corsOrigins: ['https://ui.example', 'https://ops.example'],
      login: { freeFailures: 1, backoffMs: 200, maxFailures: 4, maxFailuresPerAddress: 8, lockoutSeconds: 60 },
    });
    expect(c.admin.username).toBe('root');
    expect(c.admin.password).toBe('s3cret');
    expect(c.worker).toEqual({ concurrency: 8, snapshotCleanupSeconds: 5, lockMs: 4000, stalledIntervalMs: 750 });
    expect(c.logLevel).toBe('debug');
  });

  it('takes the default repository passphrase verbatim (spaces kept), unset when empty', () => {
    expect(loadConfig({ VMKEEP_REPOSITORY_PASSPHRASE: ' pass phrase ' }, CWD).repositoryPassphrase).toBe(' pass phrase ');
    expect(loadConfig({ VMKEEP_REPOSITORY_PASSPHRASE: '' }, CWD).repositoryPassphrase).toBeUndefined();
    expect(loadConfig({}, CWD).repositoryPassphrase).toBeUndefined();
  });

  it('treats blank values as unset', () => {
    expect(loadConfig({ DATABASE_URL: '  ', VMKEEP_API_PORT: '' }, CWD).api.port).toBe(8080);
  });

  it.each([
    ['mysql://u:p@db:3306/vmkeep', 'mysql://u:p@db:3306/vmkeep'],
    ['mariadb://u:p@db/vmkeep', 'mysql://u:p@db/vmkeep'],
  ])('accepts the MySQL/MariaDB URL %s', (url, expected) => {
    expect(loadConfig({ DATABASE_URL: url }, CWD).database).toEqual({ type: 'mysql', url: expected });
  });

  it('accepts sqlite: URLs relative to the working directory or absolute', () => {
    expect(loadConfig({ DATABASE_URL: 'sqlite:db/x.sqlite' }, CWD).database).toEqual({
      type: 'sqlite',
      sqlitePath: path.join(CWD, 'db', 'x.sqlite'),
    });
    expect(loadConfig({ DATABASE_URL: 'sqlite:/tmp/y.sqlite' }, CWD).database.sqlitePath).toBe('/tmp/y.sqlite');
  });

  it('decodes the secret key from 64 hex digits or base64', () => {
    const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7));
    expect(loadConfig({ VMKEEP_SECRET_KEY: key.toString('hex') }, CWD).secretKey?.equals(key)).toBe(true);
    expect(loadConfig({ VMKEEP_SECRET_KEY: key.toString('base64') }, CWD).secretKey?.equals(key)).toBe(true);
  });

  it.each([
    [{ DATABASE_URL: 'postgres://x/y' }, 'DATABASE_URL must start with mysql://, mariadb:// or sqlite:'],
    [{ REDIS_URL: 'http://cache' }, 'REDIS_URL must start with redis://, rediss:// or unix:'],
    [{ VMKEEP_CHUNK_SIZE: '1024' }, 'VMKEEP_CHUNK_SIZE must be an integer between 262144 and 8388608 (got "1024")'],
    [{ VMKEEP_CHUNK_SIZE: '300000' }, 'VMKEEP_CHUNK_SIZE must be a power of two'],
    [{ VMKEEP_SECRET_KEY: 'c2hvcnQ=' }, 'VMKEEP_SECRET_KEY must be 32 bytes (64 hex digits or base64)'],
    [{ VMKEEP_LOG_LEVEL: 'trace' }, 'VMKEEP_LOG_LEVEL must be one of error, warn, log, debug, verbose'],
    [{ VMKEEP_API_PORT: '70000' }, 'VMKEEP_API_PORT must be an integer between 0 and 65535 (got "70000")'],
    [{ VMKEEP_API_PORT: 'http' }, 'VMKEEP_API_PORT must be an integer between 0 and 65535 (got "http")'],
    [{ VMKEEP_TOKEN_TTL_HOURS: '0' }, 'VMKEEP_TOKEN_TTL_HOURS must be an integer between 1 and 8760 (got "0")'],
    [{ VMKEEP_WORKER_CONCURRENCY: '1.5' }, 'VMKEEP_WORKER_CONCURRENCY must be an integer between 1 and 64 (got "1.5")'],
    [{ VMKEEP_WORKER_LOCK_MS: '999' }, 'VMKEEP_WORKER_LOCK_MS must be an integer between 1000 and 3600000 (got "999")'],
    [{ VMKEEP_WORKER_STALLED_INTERVAL_MS: '0' }, 'VMKEEP_WORKER_STALLED_INTERVAL_MS must be an integer between 500 and 3600000 (got "0")'],
  ])('names the bad variable: %j', (env, problem) => {
    expect(problemsOf(env)).toEqual([problem]);
  });

  it('reports every problem at once', () => {
    const problems = problemsOf({ DATABASE_URL: 'oracle:x', VMKEEP_LOG_LEVEL: 'loud', VMKEEP_API_PORT: '-1' });
    expect(problems).toHaveLength(3);
    expect(() => loadConfig({ VMKEEP_LOG_LEVEL: 'loud' }, CWD)).toThrow(/^invalid configuration: VMKEEP_LOG_LEVEL/);
  });

  it('never puts the secret key or admin password in error messages', () => {
    const problems = problemsOf({ VMKEEP_SECRET_KEY: 'not-a-valid-key-value', VMKEEP_ADMIN_PASSWORD: 'pw123', VMKEEP_LOG_LEVEL: 'x' });
    expect(problems.join(' ')).not.toMatch(/not-a-valid-key-value|pw123/);
  });
});

describe('loadConfig: instant restore NBD server', () => {
  it('listens on 127.0.0.1:10809 by default and reads host, port and allow-list', () => {
    const d = loadConfig({}, CWD);
    expect(d.nbd).toEqual({
      host: '127.0.0.1',
      port: 10809,
      allow: [],
      scratchDir: path.join(CWD, 'data', 'instant'),
      migrateDir: path.join(CWD, 'data', 'migrated'),
    });
    const c = loadConfig({ VMKEEP_NBD_HOST: '10.0.0.5', VMKEEP_NBD_PORT: '20809', VMKEEP_NBD_ALLOW: '10.0.0.0/8, 192.168.1.7' }, CWD);
    expect(c.nbd).toMatchObject({ host: '10.0.0.5', port: 20809, allow: ['10.0.0.0/8', '192.168.1.7'] });
    expect(() => loadConfig({ VMKEEP_NBD_PORT: '70000' }, CWD)).toThrow(/VMKEEP_NBD_PORT/);
  });
});

describe('loadCliConfig', () => {
  it('takes flags over environment over defaults and trims trailing slashes', () => {
    expect(loadCliConfig({}, {})).toEqual({ url: 'http://127.0.0.1:8080', token: undefined });
    expect(loadCliConfig({}, { VMKEEP_URL: 'http://a:1/', VMKEEP_TOKEN: 'vmk_env' })).toEqual({ url: 'http://a:1', token: 'vmk_env' });
    expect(loadCliConfig({ url: 'http://b:2//', token: 'vmk_flag' }, { VMKEEP_URL: 'http://a:1', VMKEEP_TOKEN: 'x' })).toEqual({
      url: 'http://b:2',
      token: 'vmk_flag',
    });
  });
});

describe('loadS3Config', () => {
  it('defaults to AWS with the SDK credential chain, and reads an S3-compatible server', () => {
    expect(loadS3Config({})).toEqual({ region: 'us-east-1', forcePathStyle: false });
    expect(
      loadS3Config({
        VMKEEP_S3_ENDPOINT: 'http://127.0.0.1:9000/',
        AWS_REGION: 'eu-central-1',
        AWS_ACCESS_KEY_ID: 'AKID',
        AWS_SECRET_ACCESS_KEY: 's3cr3t value',
      }),
    ).toEqual({
      endpoint: 'http://127.0.0.1:9000',
      region: 'eu-central-1',
      credentials: { accessKeyId: 'AKID', secretAccessKey: 's3cr3t value' },
      forcePathStyle: true,
    });
    expect(loadS3Config({ VMKEEP_S3_ENDPOINT: 'https://s3.example', VMKEEP_S3_PATH_STYLE: 'false' }).forcePathStyle).toBe(false);
  });

  it('names bad variables without echoing a secret', () => {
    const bad = () => loadS3Config({ VMKEEP_S3_ENDPOINT: 'ftp://x', AWS_SECRET_ACCESS_KEY: 'hunter2-secret', VMKEEP_S3_PATH_STYLE: 'maybe' });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/VMKEEP_S3_ENDPOINT.*AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set together.*VMKEEP_S3_PATH_STYLE/);
    expect(bad).not.toThrow(/hunter2/);
  });
});

describe('enabledLogLevels', () => {
  it('enables the configured level and every more severe one', () => {
    expect(enabledLogLevels('error')).toEqual(['fatal', 'error']);
    expect(enabledLogLevels('log')).toEqual(['fatal', 'error', 'warn', 'log']);
    expect(enabledLogLevels('verbose')).toEqual(['fatal', 'error', 'warn', 'log', 'debug', 'verbose']);
  });
});

describe('loadConfig: log format, metrics token, webhooks', () => {
  it('defaults to text logs, no metrics token and 5 webhook attempts; reads overrides', () => {
    const d = loadConfig({}, CWD);
    expect(d.logFormat).toBe('text');
    expect(d.metricsToken).toBeUndefined();
    expect(d.webhooks).toEqual({ timeoutMs: 10_000, attempts: 5, backoffMs: 5000 });
    const c = loadConfig(
      { VMKEEP_LOG_FORMAT: 'json', VMKEEP_METRICS_TOKEN: 'prom-scrape-token-123', VMKEEP_WEBHOOK_TIMEOUT_MS: '2000', VMKEEP_WEBHOOK_ATTEMPTS: '3', VMKEEP_WEBHOOK_BACKOFF_MS: '100' },
      CWD,
    );
    expect(c).toMatchObject({ logFormat: 'json', metricsToken: 'prom-scrape-token-123', webhooks: { timeoutMs: 2000, attempts: 3, backoffMs: 100 } });
  });

  it('names bad values without echoing the metrics token', () => {
    expect(() => loadConfig({ VMKEEP_LOG_FORMAT: 'xml' }, CWD)).toThrow('VMKEEP_LOG_FORMAT must be text or json');
    expect(() => loadConfig({ VMKEEP_METRICS_TOKEN: 'short-secret' }, CWD)).toThrow(/VMKEEP_METRICS_TOKEN must be at least 16 characters/);
    expect(() => loadConfig({ VMKEEP_METRICS_TOKEN: 'short-secret' }, CWD)).not.toThrow(/short-secret/);
    expect(() => loadConfig({ VMKEEP_WEBHOOK_ATTEMPTS: '0' }, CWD)).toThrow(/VMKEEP_WEBHOOK_ATTEMPTS/);
  });
});
