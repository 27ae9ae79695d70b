export * from './errors';
export * from './vsphere-client';
export * from './hosts.service';
export * from './inventory.module';
