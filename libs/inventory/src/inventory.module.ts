import { Module } from '@nestjs/common';
import { HostsService } from './hosts.service';
import { realVsphereClient, VSPHERE_CLIENT } from './vsphere-client';

/** Hosts and their inventory. Needs PersistenceModule (global) for repositories and SecretBox. */
@Module({
  providers: [HostsService, { provide: VSPHERE_CLIENT, useValue: realVsphereClient }],
  exports: [HostsService],
})
export class InventoryModule {}
