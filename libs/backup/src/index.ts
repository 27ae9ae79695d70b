export * from './backup.module';
export * from './backup.service';
export * from './snapshot-cleanup.service';
export * from './failure';
export * from './progress';
export * from './quiesce';
