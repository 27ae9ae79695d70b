export * from './descriptor';
export * from './sparse-header';
export { HostedSparseExtent, MARKER_EOS, MARKER_GT, MARKER_GD, MARKER_FOOTER } from './hosted-sparse';
export { CowdExtent, parseCowdHeader, COWD_MAGIC, COWD_GTES_PER_GT, type CowdHeader } from './cowd';
export * from './sesparse';
export { FlatExtent, ZeroExtent } from './flat';
export type { VmdkExtent, ExtentMap, Piece } from './layer';
export { VmdkDisk } from './vmdk-disk';
export { openVmdk, openVmdkSource, localFileResolver, noFileResolver, type VmdkFileResolver } from './open';
