export * from './export';
export * from './instant';
export * from './vm';
export * from './files';
