export * from './repositories.module';
export * from './repositories.service';
export * from './repository-resolver';
export * from './point-repositories';
export type { ImportReport } from './import-points';
export { DETACHED_HOST_URL, vmIdentityOf } from './import-points';
