export * from './export';
export * from './instant';
