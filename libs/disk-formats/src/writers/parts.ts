/**
 * Building blocks of the writers, for exporters that lay images out themselves (the streaming export of
 * libs/restore). Exported as the `writerParts` namespace so that their names never clash with the readers'.
 */
export * from './vmdk-meta';
export { tarEnd, tarFileHeader, tarPadding } from './tar';
export { buildOvf, ddbAdapterFor } from './ovf';
export type { OvfSpec } from './ovf';
export { memberBase } from './ova';
export { vhdxLayout, vhdxPrologue } from './vhdx';
export type { VhdxLayout } from './vhdx';
export { checkOptions, checkSectorDisk } from './validate';
export { alignedRuns } from './scan';
