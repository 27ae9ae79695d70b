import { connect, fetchThumbprint, type ConnectOptions, type VsphereSession } from '@vmkeep/vsphere';

/** The two entry points of the vSphere client that inventory needs; a provider so tests can stand in a fake. */
export interface VsphereClient {
  connect(options: ConnectOptions): Promise<VsphereSession>;
  fetchThumbprint(url: string): Promise<string>;
}

export const VSPHERE_CLIENT = Symbol('VSPHERE_CLIENT');

export const realVsphereClient: VsphereClient = { connect, fetchThumbprint };
