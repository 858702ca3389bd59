/**
 * The framed log format: what `openLog()` writes and `readLog()` walks, byte by byte.
 *
 * ```text
 * file    = header frame* end
 * header  = magic (8 bytes: 89 41 49 4f 4c 4f 47 0a, "\x89AIOLOG\n")
 *           version (u32 little-endian: 1)
 *           checksum (u32 little-endian: masked CRC32C of the 12 bytes before it)
 * frame   = length (u32 little-endian: the record's byte count; the top bit is reserved, 0)
 *           checksum (u32 little-endian: masked CRC32C of the 4 length bytes, then the record)
 *           record (length bytes)
 *           padding (0 to 7 zero bytes: every frame starts at a multiple of 8)
 * end     = 8 zero bytes (space allocated ahead and never written), or the end of the file
 * ```
 *
 * CRC32C is the Castagnoli CRC (reflected polynomial 0x82f63b78, as iSCSI, ext4 and LevelDB use
 * it); masked as LevelDB masks it, `((crc >>> 15) | (crc << 17)) + 0xa282ead8` modulo 2^32, so that
 * a record holding framed data of its own does not yield checksums that match by construction.
 * A frame header is 8 bytes at an offset that is a multiple of 8, so no header straddles two
 * sectors of a disk; a valid header is never all zeros (the checksum of a length of 0 is not 0),
 * which is how space allocated ahead reads as the end.
 *
 * Walking a log stops at the first frame that is not valid. That frame ends the log where the
 * crash of a writer can explain it: its header is zeros, it runs past the end of the file, it
 * holds a 512-byte sector of zeros (space the crash left unwritten), or no valid frame follows it
 * anywhere in the file. Otherwise it is corruption of records before valid ones, and an error
 * naming its offset.
 *
 * @module
 */

/** The first 8 bytes of a framed log. */
export const LOG_MAGIC: Uint8Array = Uint8Array.of(0x89, 0x41, 0x49, 0x4f, 0x4c, 0x4f, 0x47, 0x0a);
/** The format's version, in the header. */
export const LOG_VERSION = 1;
/** Bytes of the file header. */
export const HEADER_SIZE = 16;
/** Bytes of a frame's header (length and checksum). */
export const FRAME_HEADER_SIZE = 8;
/** The longest record the format holds: the length field has 31 bits. */
export const MAX_RECORD_LENGTH = 0x7fff_ffff;
/** Torn writes are looked for at this granularity: a disk writes a sector whole or not at all. */
const SECTOR = 512;

const TABLES: Uint32Array[] = (() => {
  const tables = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    tables[0][n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    for (let t = 1; t < 8; t++) tables[t][n] = (tables[t - 1][n] >>> 8) ^ tables[0][tables[t - 1][n] & 0xff];
  }
  return tables;
})();

/**
 * CRC32C of `bytes` (of `bytes[start, end)`), continuing `previous` (the CRC32C of what came
 * before them): so `crc32c(b, crc32c(a))` is the CRC32C of `a` followed by `b`.
 */
export function crc32c(bytes: Uint8Array, previous = 0, start = 0, end: number = bytes.length): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES;
  let crc = ~previous >>> 0;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    const low = (crc ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24))) >>> 0;
    crc = t7[low & 0xff] ^ t6[(low >>> 8) & 0xff] ^ t5[(low >>> 16) & 0xff] ^ t4[low >>> 24]
      ^ t3[bytes[i + 4]] ^ t2[bytes[i + 5]] ^ t1[bytes[i + 6]] ^ t0[bytes[i + 7]];
  }
  for (; i < end; i++) crc = t0[(crc ^ bytes[i]) & 0xff] ^ (crc >>> 8);
  return ~crc >>> 0;
}

/** CRC32C of a record's length as a frame stores it (4 bytes, little-endian). */
function lengthCrc(length: number): number {
  const [t0, t1, t2, t3] = TABLES;
  const low = (0xffffffff ^ length) >>> 0;
  return ~(t3[low & 0xff] ^ t2[(low >>> 8) & 0xff] ^ t1[(low >>> 16) & 0xff] ^ t0[low >>> 24]) >>> 0;
}

/** A CRC as the format stores it (LevelDB's mask). */
export function maskCrc(crc: number): number {
  return (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;
}

/** Bytes a record of `length` bytes takes in the file, header and padding included. */
export function frameSize(length: number): number {
  return FRAME_HEADER_SIZE + Math.ceil(length / 8) * 8;
}

/** The file header. */
export function encodeHeader(): Uint8Array {
  const header = new Uint8Array(HEADER_SIZE);
  const view = new DataView(header.buffer);
  header.set(LOG_MAGIC);
  view.setUint32(8, LOG_VERSION, true);
  view.setUint32(12, maskCrc(crc32c(header.subarray(0, 12))), true);
  return header;
}

/** What the first bytes of a file are: a framed log's header, zeros (nothing written yet), or not a log. */
export function headerKind(bytes: Uint8Array): "log" | "empty" | "other" {
  if (bytes.every((byte) => byte === 0)) return "empty";
  if (bytes.length < HEADER_SIZE) return "other";
  const view = new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE);
  for (let i = 0; i < LOG_MAGIC.length; i++) if (bytes[i] !== LOG_MAGIC[i]) return "other";
  if (view.getUint32(12, true) !== maskCrc(crc32c(bytes.subarray(0, 12)))) return "other";
  return "log";
}

/** The version a valid header names. */
export function headerVersion(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, HEADER_SIZE).getUint32(8, true);
}

/**
 * Writes the frame of `record` at `at` in `into` (whose padding bytes must be zero already),
 * through `view`, a DataView of all of `into`. Returns the offset after the frame.
 */
export function encodeFrame(into: Uint8Array, view: DataView, at: number, record: Uint8Array): number {
  view.setUint32(at, record.length, true);
  view.setUint32(at + 4, maskCrc(crc32c(record, lengthCrc(record.length))), true);
  into.set(record, at + FRAME_HEADER_SIZE);
  return at + frameSize(record.length);
}

/** Thrown when a framed log holds a corrupted record before valid ones, or is not a framed log. */
export class CorruptLogError extends Error {
  /** The log's path. */
  readonly path: string;
  /** Where the bad frame (or header) starts in the file. */
  readonly offset: number;

  /**
   * Creates the error; its message names the log, the offset and the reason.
   *
   * @param path The log's path.
   * @param offset Where the bad frame (or header) starts in the file.
   * @param reason What is wrong there.
   */
  constructor(path: string, offset: number, reason: string) {
    super(`Corrupt log ${JSON.stringify(path)} at offset ${offset}: ${reason}`);
    this.name = "CorruptLogError";
    this.path = path;
    this.offset = offset;
  }
}

/** Reads up to `buffer.length` bytes at `position`; resolves with the count (0 at the end). */
export type ReadAt = (buffer: Uint8Array, position: number) => Promise<number>;

/** Fills `buffer` from `position` as far as the file goes; resolves with the bytes read. */
async function readFully(read: ReadAt, buffer: Uint8Array, position: number): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const bytes = await read(buffer.subarray(filled), position + filled);
    if (bytes === 0) break;
    filled += bytes;
  }
  return filled;
}

/** Whether the frame in `bytes` (header included) is valid, its length already checked. */
function frameValid(bytes: Uint8Array, length: number): boolean {
  const view = new DataView(bytes.buffer, bytes.byteOffset, FRAME_HEADER_SIZE);
  const expected = maskCrc(crc32c(bytes, lengthCrc(length), FRAME_HEADER_SIZE, FRAME_HEADER_SIZE + length));
  return view.getUint32(4, true) === expected;
}

/** Whether `bytes`, starting at file offset `offset`, holds a whole 512-byte sector of zeros. */
function holdsZeroSector(bytes: Uint8Array, offset: number): boolean {
  let start = Math.ceil(offset / SECTOR) * SECTOR - offset;
  for (; start + SECTOR <= bytes.length; start += SECTOR) {
    let zero = true;
    for (let i = start; i < start + SECTOR && zero; i++) zero = bytes[i] === 0;
    if (zero) return true;
  }
  return false;
}

/** Whether a valid frame starts at any multiple of 8 from `from` to the end of a file of `size` bytes. */
async function validFrameFrom(read: ReadAt, from: number, size: number): Promise<boolean> {
  const window = new Uint8Array(1 << 16);
  for (let start = from; start + FRAME_HEADER_SIZE <= size; start += window.length - FRAME_HEADER_SIZE) {
    const got = await readFully(read, window, start);
    const view = new DataView(window.buffer, 0, got);
    for (let at = 0; at + FRAME_HEADER_SIZE <= got; at += 8) {
      const length = view.getUint32(at, true);
      if (length === 0 && view.getUint32(at + 4, true) === 0) continue;
      if (length > MAX_RECORD_LENGTH || start + at + frameSize(length) > size) continue;
      const frame = new Uint8Array(FRAME_HEADER_SIZE + length);
      if (await readFully(read, frame, start + at) < frame.length) continue;
      if (frameValid(frame, length)) return true;
    }
    if (got < window.length) break;
  }
  return false;
}

/**
 * The bytes of a file read ahead, a chunk at a time: the unread part is `buffer[start, end)`,
 * and `position` is the file offset of `buffer[end]`. The buffer grows by doubling (for a
 * record longer than it) and is compacted only once half of it was consumed, so that a file is
 * read in linear time whatever its records' lengths.
 */
export class ReadWindow {
  buffer: Uint8Array;
  start = 0;
  end = 0;
  position: number;
  readonly #read: ReadAt;
  readonly #chunkSize: number;
  readonly #size: number;

  /**
   * @param read Reads the file.
   * @param chunkSize Bytes per read.
   * @param position Where reading starts.
   * @param size Where it stops (`Infinity`: at the end of the file).
   */
  constructor(read: ReadAt, chunkSize: number, position = 0, size = Infinity) {
    this.#read = read;
    this.#chunkSize = chunkSize;
    this.#size = size;
    this.position = position;
    this.buffer = new Uint8Array(chunkSize);
  }

  /** Reads one chunk more, after `end`; resolves with the bytes read (0 at the end). */
  async more(wanted = 0): Promise<number> {
    if (this.position >= this.#size) return 0;
    if (this.buffer.length - this.end < this.#chunkSize) {
      const live = this.end - this.start;
      if (live <= this.buffer.length / 2 && Math.max(live, wanted) + this.#chunkSize <= this.buffer.length) {
        this.buffer.copyWithin(0, this.start, this.end);
      } else {
        const grown = new Uint8Array(Math.max(this.buffer.length * 2, Math.max(live, wanted) + this.#chunkSize));
        grown.set(this.buffer.subarray(this.start, this.end));
        this.buffer = grown;
      }
      this.start = 0;
      this.end = live;
    }
    // A chunk, or what a longer record still lacks.
    const want = Math.max(this.#chunkSize, wanted - (this.end - this.start));
    const room = Math.min(want, this.buffer.length - this.end, this.#size - this.position);
    const bytes = await this.#read(this.buffer.subarray(this.end, this.end + room), this.position);
    this.end += bytes;
    this.position += bytes;
    return bytes;
  }

  /** Reads until `wanted` bytes are unread, or the end of the file. */
  async fill(wanted: number): Promise<void> {
    while (this.end - this.start < wanted && await this.more(wanted) > 0);
  }

  /** Skips `count` bytes, read or not. */
  skip(count: number): void {
    if (this.end - this.start >= count) {
      this.start += count;
    } else {
      this.position += count - (this.end - this.start);
      this.start = this.end = 0;
    }
  }
}

/**
 * Walks the frames of a framed log of `size` bytes from `HEADER_SIZE` on: yields each record
 * with its offset, then returns where the log ends (just after the last valid frame: where the
 * next record goes). Throws CorruptLogError for a corrupted record before valid ones. Reads
 * `chunkSize` bytes at a time (more for a longer record).
 *
 * @param read Reads the file.
 * @param size The file's size.
 * @param path The file's path, for errors.
 * @param chunkSize Bytes per read.
 */
export async function* walkFrames(
  read: ReadAt,
  size: number,
  path: string,
  chunkSize = 65536,
): AsyncGenerator<{ offset: number; record: Uint8Array }, number> {
  const window = new ReadWindow(read, Math.max(chunkSize, FRAME_HEADER_SIZE), HEADER_SIZE, size);
  /** The file offset of the unread bytes' start. */
  let offset = HEADER_SIZE;
  for (;;) {
    await window.fill(FRAME_HEADER_SIZE);
    const { buffer, start, end } = window;
    if (end - start < FRAME_HEADER_SIZE) return offset;
    const view = new DataView(buffer.buffer, buffer.byteOffset + start, FRAME_HEADER_SIZE);
    const length = view.getUint32(0, true);
    // Space never written: the end.
    if (length === 0 && view.getUint32(4, true) === 0) return offset;
    if (length > MAX_RECORD_LENGTH) {
      // A length no writer makes (its reserved bit set): below, torn unless valid frames follow.
    } else if (offset + FRAME_HEADER_SIZE + length > size) {
      // It runs past the end of the file: a write cut short.
      return offset;
    } else {
      await window.fill(FRAME_HEADER_SIZE + length);
      const frame = window.buffer.subarray(window.start, window.start + FRAME_HEADER_SIZE + length);
      if (frameValid(frame, length)) {
        yield { offset, record: frame.slice(FRAME_HEADER_SIZE) };
        const total = frameSize(length);
        offset += total;
        window.skip(total);
        continue;
      }
      // Bytes that do not match their checksum, holding a sector the crash left unwritten.
      if (holdsZeroSector(frame, offset)) return offset;
    }
    if (await validFrameFrom(read, offset + 8, size)) {
      throw new CorruptLogError(
        path,
        offset,
        length > MAX_RECORD_LENGTH
          ? `a frame's length field (${length}) has its reserved bit set, and valid records follow it`
          : "a record does not match its checksum, and valid records follow it",
      );
    }
    return offset;
  }
}
