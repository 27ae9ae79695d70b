/** Sizes and sanity limits shared by the VMDK readers. Anything a header claims beyond these is refused. */
export const SECTOR = 512;
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const TiB = 1024 * 1024 * MiB;

/** A text descriptor (or an embedded one) larger than this is not a descriptor. */
export const MAX_DESCRIPTOR_BYTES = MiB;
/** Lines in a descriptor (comments included). */
export const MAX_DESCRIPTOR_LINES = 65536;
/** Extent lines in a descriptor (62 TiB in 2 GiB pieces needs ~32k). */
export const MAX_EXTENTS = 32768;
/** Largest virtual disk we accept (VMware's limit is 62 TiB). */
export const MAX_VIRTUAL_BYTES = 64 * TiB;
/** Parent chains deeper than this are refused (ESXi allows 32 snapshots). */
export const MAX_CHAIN_DEPTH = 64;
/** Grain tables kept in memory per extent. */
export const TABLE_CACHE_ENTRIES = 64;
/** Largest grain directory loaded at once. */
export const MAX_DIRECTORY_BYTES = 16 * MiB;
