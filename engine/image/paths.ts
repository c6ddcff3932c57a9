// File names recorded inside images (backing file, external data file) are resolved the way QEMU
// resolves them, so that the names we print are the names qemu-img prints.

/** True when `name` starts with a protocol prefix ("nbd:", "file:"): a ':' before any '/'. */
export function hasProtocol(name: string): boolean {
  const i = name.search(/[:/]/);
  return i >= 0 && name[i] === ':';
}

/**
 * QEMU's bdrv_get_full_backing_filename_from_filename + path_combine: an absolute name, an empty
 * name or one with a protocol is used as is; otherwise it replaces the last path component of the
 * overlay's name. Nothing is normalised ("d/../b" stays as written), as in QEMU.
 */
export function resolveRelativeTo(overlay: string, recorded: string): string {
  if (recorded === '' || hasProtocol(recorded) || recorded.startsWith('/')) return recorded;
  let start = 0;
  if (hasProtocol(overlay)) start = overlay.indexOf(':') + 1;
  const slash = overlay.lastIndexOf('/');
  const cut = Math.max(start, slash + 1);
  return overlay.slice(0, cut) + recorded;
}

/** The path to open for a resolved name: "file:" is the plain file protocol; others are refused. */
export function localPath(name: string): string | undefined {
  if (!hasProtocol(name)) return name;
  if (name.startsWith('file:')) return name.slice('file:'.length);
  return undefined;
}
