export * from './instant-sessions';
export * from './datastore-delivery';
export * from './instant-sessions.service';
export * from './instant-restore.module';
