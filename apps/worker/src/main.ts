import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import { SnapshotCleanupService } from '@vmkeep/backup';
import { APP_CONFIG, appLogger, loadConfig, type AppConfig } from '@vmkeep/config';
import { redactSecrets } from '@vmkeep/persistence';
import { redisConnection } from '@vmkeep/queue';
import { BackupWorker } from './backup-worker';
import { RestoreWorker } from './restore-worker';
import { WorkerModule } from './worker.module';

async function main(): Promise<void> {
  const app = await NestFactory.createApplicationContext(WorkerModule, { logger: appLogger(loadConfig(), redactSecrets) });
  const config = app.get<AppConfig>(APP_CONFIG);
  const worker = app.get(BackupWorker);
  const cleanup = app.get(SnapshotCleanupService);

  await worker.start(await redisConnection(config));
  const restoreWorker = app.get(RestoreWorker);
  await restoreWorker.start(await redisConnection(config));
  cleanup.start(config.worker.snapshotCleanupSeconds * 1000);

  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    // First signal: finish running jobs, then exit. Second signal: abort them (snapshots are still removed).
    const force = stopping;
    stopping = true;
    process.stdout.write(`worker: ${signal} received, ${force ? 'aborting running jobs' : 'finishing running jobs'}\n`);
    cleanup.stop();
    Promise.all([worker.stop(force), restoreWorker.stop(force)])
      .then(() => app.close())
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        process.stderr.write(`worker: shutdown failed: ${String(err)}\n`);
        process.exit(1);
      });
  };
  process.on('SIGTERM', shutdown);
  process.on('SIGINT', shutdown);
}

main().catch((err: unknown) => {
  process.stderr.write(`worker: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
