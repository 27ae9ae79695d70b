export * from './redis-connection';
export * from './backup-queue';
export * from './queue.module';
