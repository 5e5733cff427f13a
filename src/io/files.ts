// Reading a file the user named, so that no path can hang or exhaust the process: only regular files are read
// (a FIFO would block forever, /dev/zero never ends, a directory has no bytes), the size is checked before anything
// is allocated, and reads are positioned, so a caller can read a header first and then only what it claims.
// node:fs is loaded on use: the modules that import this one also run in a browser, where only bytes are read.

import { TinyseekError } from "../errors.ts";

/** The largest file read whole: 2 GiB - 1, the most Node reads into one buffer (and 4× that once widened from F8). */
export const MAX_FILE_BYTES = 2 ** 31 - 1;

/** A file that cannot be read: `path: reason` on one line; `reason` alone lets a caller name its flag instead. */
export class FileError extends TinyseekError {
  override name = "FileError";
  constructor(readonly path: string, readonly reason: string) {
    super(`${path}: ${reason}`);
  }
}

/** An open regular file: its size when opened, and positioned reads that must find every byte they ask for. */
export interface RandomAccessFile {
  readonly size: number;
  /** Fills `into` with the bytes from `offset` on, and returns it. */
  read(offset: number, into: Uint8Array): Promise<Uint8Array>;
}

interface Kind {
  isFile(): boolean; isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean;
}

/** What a path that is not a regular file is, in words. */
function kindOf(s: Kind): string {
  if (s.isDirectory()) return "a directory";
  if (s.isFIFO()) return "a FIFO (named pipe)";
  if (s.isCharacterDevice()) return "a character device";
  if (s.isBlockDevice()) return "a block device";
  if (s.isSocket()) return "a socket";
  return "not a regular file";
}

/** Why a path could not be opened or read, in words, without repeating the path (the caller's message names it). */
export const reasonFor = (error: NodeJS.ErrnoException): string =>
  error.code === "ENOENT" ? "no such file"
    : error.code === "EACCES" ? "permission denied"
      : error.code === "ENOTDIR" ? "a part of the path is not a directory"
        : error.code === "ELOOP" ? "too many symbolic links"
          : error.message.replace(/, \w+ '.*'$/s, "");

/**
 * Opens `path` if it is a regular file of at most `maxBytes` and hands it to `use`; closes it afterwards. The type
 * is checked before opening (opening some devices has effects) and again on the open descriptor, which is opened
 * non-blocking so that a path swapped for a FIFO in between cannot block the open itself.
 */
export async function withRegularFile<T>(path: string, maxBytes: number, use: (file: RandomAccessFile) => Promise<T>): Promise<T> {
  const fs = await import("node:fs/promises");
  const { constants } = await import("node:fs");
  const refuse = (s: Kind & { size: number }) => {
    if (!s.isFile()) throw new FileError(path, `${kindOf(s)}, not a regular file`);
    if (s.size > maxBytes) throw new FileError(path, `${s.size} bytes, more than the limit of ${maxBytes} bytes for a file read whole`);
  };
  let handle: Awaited<ReturnType<typeof fs.open>>;
  try {
    refuse(await fs.stat(path));
    handle = await fs.open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (error) {
    if (error instanceof FileError) throw error;
    throw new FileError(path, reasonFor(error as NodeJS.ErrnoException));
  }
  try {
    const stats = await handle.stat();
    refuse(stats);
    const size = stats.size;
    return await use({
      size,
      async read(offset, out) {
        const length = out.length;
        if (!(offset >= 0 && offset + length <= size)) {
          throw new FileError(path, `read of ${length} bytes at ${offset} is outside the file's ${size} bytes`);
        }
        for (let done = 0; done < length;) {
          let bytesRead: number;
          try {
            ({ bytesRead } = await handle.read(out, done, length - done, offset + done));
          } catch (error) {
            throw new FileError(path, reasonFor(error as NodeJS.ErrnoException));
          }
          if (bytesRead === 0) throw new FileError(path, `ended at byte ${offset + done} while being read (it had ${size} bytes when opened)`);
          done += bytesRead;
        }
        return out;
      },
    });
  } finally {
    await handle.close();
  }
}

/** A regular file's bytes, at most `maxBytes` of them, with every refusal as one clear line. */
export async function readBytes(path: string, maxBytes = MAX_FILE_BYTES): Promise<Uint8Array> {
  return withRegularFile(path, maxBytes, (file) => file.read(0, new Uint8Array(file.size)));
}
