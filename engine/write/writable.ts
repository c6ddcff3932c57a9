// What the writer does not maintain, refused when an image is opened for writing: one line naming
// the header field and its value.
import * as C from '../format/constants.js';
import { Qcow2FormatError } from '../base/errors.js';
import type { Qcow2Image } from '../image/qcow2-image.js';
import type { PositionalIO } from '../io/positional-io.js';
import type { WriterOptions } from './writer-options.js';

export function refuseUnwritable(img: Qcow2Image, io: PositionalIO, opts: WriterOptions): void {
  const h = img.header;
  const refuse = (what: string, field: string, value: string | number | bigint): never => {
    throw new Qcow2FormatError(`cannot write: ${what}`, field, value);
  };
  if (io.readOnly) refuse('the file is opened read-only', 'io', io.name);
  if (h.cryptMethod !== C.CRYPT_NONE)
    refuse('encrypted images are not supported', 'header.crypt_method', h.cryptMethod);
  if (img.geo.extendedL2)
    refuse(
      'extended L2 entries are not supported',
      'header.incompatible_features',
      `0x${h.incompatibleFeatures.toString(16)}`,
    );
  if (img.hasExternalData)
    refuse(
      'external data files are not supported',
      'header.incompatible_features',
      `0x${h.incompatibleFeatures.toString(16)}`,
    );
  if (img.isCorrupt)
    refuse(
      'the image is marked corrupt; check and repair it first',
      'header.incompatible_features',
      `0x${h.incompatibleFeatures.toString(16)}`,
    );
  if ((h.autoclearFeatures & C.AUTOCLEAR_BITMAPS) !== 0n)
    refuse(
      'images with persistent bitmaps are not supported',
      'header.autoclear_features',
      `0x${h.autoclearFeatures.toString(16)}`,
    );
  if ((h.autoclearFeatures & ~C.AUTOCLEAR_KNOWN_MASK) !== 0n)
    refuse('unknown autoclear features', 'header.autoclear_features', `0x${h.autoclearFeatures.toString(16)}`);
  if (h.backingFile && !opts.backing)
    refuse(`the backing file must be supplied (${h.backingFile})`, 'header.backing_file', h.backingFile);
}
