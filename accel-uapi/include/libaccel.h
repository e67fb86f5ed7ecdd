/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * libaccel.h - the C entry points of libaccel.so.
 *
 * accel.h is the ABI: structs, constants and ioctl numbers.  This header
 * declares the five functions that carry it, shaped like the system calls a
 * device node would take (open/ioctl/close/mmap/munmap), so a program written
 * against them ports to a character device by a rename:
 *
 *	int fd = accel_open("accel0");
 *	struct accel_version v = { 0 };
 *	if (fd < 0 || accel_ioctl(fd, ACCEL_IOCTL_VERSION, &v) < 0)
 *		perror("accel");
 *
 * The devices are those of the process-wide registry; when none is
 * registered the first accel_open registers the embedded mock devices
 * (ACCEL_MOCK_DEVICES, default 2: accel0 and accel1).
 *
 * Every function reports failure as -1 (accel_mmap: MAP_FAILED) with errno
 * set to a Linux errno value (docs/uapi.md, section 3) and leaves errno
 * alone on success.  Pointers passed in are read and written with
 * process_vm_readv/process_vm_writev, never dereferenced: a bad pointer is
 * EFAULT, not a crash.  All functions are thread-safe.
 *
 * Link with -laccel.
 */
#ifndef LIBACCEL_H
#define LIBACCEL_H

#include <stddef.h>
#include <stdint.h>

#include "accel.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * accel_open - open an accel device.
 * @name: "accelN" or "/dev/accel/accelN".
 *
 * Returns a new descriptor: a real file descriptor of the process
 * (close-on-exec), so it never equals any other descriptor in use.  Each
 * open is a separate file with its own handles.  Close it with
 * accel_close(), never with close(2).
 *
 * Errors: ENODEV no such device; EFAULT @name is NULL or unreadable;
 * EINVAL @name is not UTF-8; ENAMETOOLONG; EMFILE/ENFILE no descriptor left.
 */
int accel_open(const char *name);

/*
 * accel_ioctl - issue an ACCEL_IOCTL_* command, exactly like ioctl(2).
 * @fd: from accel_open().
 * @request: an ACCEL_IOCTL_* number; its size bits say how many bytes of
 *           *@arg are the struct (truncated to 32 bits, as by the kernel).
 * @arg: the command's struct.  For _IOW/_IOWR commands it is read before
 *       the command runs; for _IOR/_IOWR commands it is checked writable
 *       before the command runs and written back only on success.
 *
 * Returns 0 on success.
 *
 * Errors: EBADF @fd is not an open accel descriptor; ENOTTY unknown
 * command (type, nr or direction; *@arg is not touched); EFAULT @arg (or an
 * array it points to) is unreadable or unwritable; otherwise the command's
 * own errno, see docs/uapi.md (EINVAL, ENOENT, ETIMEDOUT, ...).
 */
int accel_ioctl(int fd, unsigned long request, void *arg);

/*
 * accel_close - close a descriptor from accel_open().
 *
 * Releases everything the open owns (queues, once their in-flight jobs are
 * done, contexts, BOs, syncobjs) and its file descriptor.  Mappings from
 * accel_mmap() stay valid until accel_munmap(), as with mmap(2).
 *
 * Returns 0.  Errors: EBADF @fd is not an open accel descriptor (or was
 * already closed).
 */
int accel_close(int fd);

/*
 * accel_mmap - map a CPU-visible BO into the process.
 * @fd: the descriptor the BO belongs to.
 * @offset: from ACCEL_IOCTL_BO_MMAP_OFFSET.
 * @len: bytes to map from the start of the BO, 0 < @len <= its size.
 * @prot: PROT_READ or PROT_READ | PROT_WRITE.
 *
 * Returns the address of a shared mapping of the BO, which stays alive (and
 * keeps the BO alive) until accel_munmap(), or MAP_FAILED ((void *)-1).
 *
 * Errors: EBADF bad @fd; EINVAL another @prot, a zero or too large @len, an
 * unknown @offset, a BO created without ACCEL_BO_CPU_VISIBLE; ENOMEM.
 */
void *accel_mmap(int fd, uint64_t offset, size_t len, int prot);

/*
 * accel_munmap - unmap a mapping from accel_mmap().
 * @p: the address accel_mmap() returned.
 * @len: the length accel_mmap() was given.
 *
 * Returns 0.  Errors: EINVAL @p is not a live accel mapping, or @len is not
 * its length (the mapping is then left in place).
 */
int accel_munmap(void *p, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* LIBACCEL_H */
