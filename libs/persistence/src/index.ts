export * from './entities';
export * from './migrations';
export * from './data-source';
export * from './secrets';
export * from './persistence.module';
export * from './redact';
