export * from './instant-sessions';
export * from './instant-sessions.service';
export * from './instant-restore.module';
