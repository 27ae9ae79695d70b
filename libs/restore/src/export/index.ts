export * from './formats';
export { exportDisk, exportVm } from './disk-export';
export { ovaExport } from './ova-export';
export type { OvaExport, OvaVm } from './ova-export';
export { sizedStreamOptimized } from './vmdk-sized';
export { vhdxExport, vhdxExportBlockSize } from './vhdx-export';
