export { restoreVm, type VmRestoreOptions, type VmRestoreContext, type VmRestoreProgress, type VmRestoreResult, type RestoreDiskSource } from './vm-restore';
export { VmRestoreError } from './errors';
export { diskStream, descriptorFor, flatPathOf, uploadDisk, type DiskUpload } from './disk-upload';
export { VmRestoreJobs, VmRestoreJobsModule, VmRestoreModule, VmRestoreService, RESTORE_QUEUE_TOKEN, type RestoreVmJobOptions } from './vm-restore.service';
