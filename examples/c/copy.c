/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * copy.c - a portable COPY on accel0 through libaccel.so, from C.
 *
 * Opens accel0, prints its version, device info and memory regions, maps a
 * two-page BO into a context, fills its first 4 KiB, has the device copy
 * them to the second page with a portable ACCEL_CMD_COPY, waits on a
 * syncobj and checks the result byte for byte.
 *
 * Exit status 0 and "copy ok: 4096 bytes" on success; on any failure the
 * failing step and strerror(errno) are printed and the status is 1.
 *
 * Build (from the repository root; examples/c/run.sh does all of it):
 *   cargo build -p accel
 *   gcc -std=c11 -Wall -Wextra -Werror -I accel-uapi/include examples/c/copy.c \
 *       -L target/debug -laccel -Wl,-rpath,$PWD/target/debug -o target/debug/accel-c-copy
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "libaccel.h"

#define COPY_BYTES 4096u

/* Report a failed step with errno and exit 1. */
static void die(const char *step)
{
	int e = errno;
	fprintf(stderr, "accel-c-copy: %s failed: %s (errno %d)\n", step, strerror(e), e);
	exit(1);
}

/* Fail with a message that is not about errno. */
static void fail(const char *step, const char *why)
{
	fprintf(stderr, "accel-c-copy: %s failed: %s\n", step, why);
	exit(1);
}

/* accel_ioctl or die. */
static void xioctl(int fd, unsigned long request, void *arg, const char *step)
{
	if (accel_ioctl(fd, request, arg) < 0)
		die(step);
}

/*
 * DEVICE_QUERY, size-then-fill: ask for the size with size = 0, then fetch
 * the result into a buffer of that size.  Returns a malloc'ed buffer.
 */
static void *query(int fd, uint32_t id, uint32_t *size, const char *step)
{
	struct accel_device_query q = { .query_id = id, .size = 0 };
	void *buf;

	xioctl(fd, ACCEL_IOCTL_DEVICE_QUERY, &q, step);
	if (q.size == 0)
		fail(step, "empty result");
	buf = calloc(1, q.size);
	if (!buf)
		die("calloc");
	q.data_ptr = (uint64_t)(uintptr_t)buf;
	xioctl(fd, ACCEL_IOCTL_DEVICE_QUERY, &q, step);
	*size = q.size;
	return buf;
}

/* Create a CPU-visible BO in @region and map it read-write. */
static uint32_t bo_create_mapped(int fd, uint32_t region, uint64_t size, void **map, const char *what)
{
	struct accel_bo_create bo = { .size = size, .region = region, .flags = ACCEL_BO_CPU_VISIBLE };
	struct accel_bo_mmap_offset off = { 0 };
	char step[64];

	snprintf(step, sizeof(step), "BO_CREATE (%s)", what);
	xioctl(fd, ACCEL_IOCTL_BO_CREATE, &bo, step);
	off.handle = bo.handle;
	snprintf(step, sizeof(step), "BO_MMAP_OFFSET (%s)", what);
	xioctl(fd, ACCEL_IOCTL_BO_MMAP_OFFSET, &off, step);
	*map = accel_mmap(fd, off.offset, (size_t)size, PROT_READ | PROT_WRITE);
	if (*map == MAP_FAILED) {
		snprintf(step, sizeof(step), "accel_mmap (%s)", what);
		die(step);
	}
	return bo.handle;
}

int main(void)
{
	struct accel_version ver = { 0 };
	struct accel_device_info *info;
	struct accel_query_memory_regions *regs;
	struct accel_memory_region *reg;
	struct accel_va_range *va;
	uint32_t size, i;
	int fd;

	fd = accel_open("accel0");
	if (fd < 0)
		die("accel_open(\"accel0\")");

	/* Who are we talking to? */
	xioctl(fd, ACCEL_IOCTL_VERSION, &ver, "VERSION");
	printf("accel0: ABI %u.%u, caps %#" PRIx64 "\n", ver.major, ver.minor, (uint64_t)ver.caps);
	if (ver.major != ACCEL_ABI_MAJOR)
		fail("VERSION", "unsupported ABI major");

	info = query(fd, ACCEL_QUERY_DEVICE_INFO, &size, "DEVICE_QUERY(DEVICE_INFO)");
	if (size < sizeof(*info))
		fail("DEVICE_QUERY(DEVICE_INFO)", "short result");
	printf("device: %.32s (driver %.32s), vendor %#06x device %#06x rev %u, index %u\n",
	       (const char *)info->name, (const char *)info->driver_name, info->vendor_id, info->device_id,
	       info->revision, info->index);

	regs = query(fd, ACCEL_QUERY_MEMORY_REGIONS, &size, "DEVICE_QUERY(MEMORY_REGIONS)");
	if (size < sizeof(*regs) + regs->num_regions * sizeof(*reg) || regs->num_regions == 0)
		fail("DEVICE_QUERY(MEMORY_REGIONS)", "short result");
	reg = (struct accel_memory_region *)(regs + 1);
	for (i = 0; i < regs->num_regions; i++)
		printf("region %u: %s, %" PRIu64 " MiB (%" PRIu64 " MiB free), page sizes %#" PRIx64 "%s\n",
		       reg[i].region_id, reg[i].kind == ACCEL_MEM_REGION_DEVICE ? "device" : "host",
		       (uint64_t)reg[i].size >> 20, (uint64_t)reg[i].available >> 20, (uint64_t)reg[i].page_sizes,
		       reg[i].flags & ACCEL_MEM_REGION_CPU_VISIBLE ? ", cpu-visible" : "");
	if (!(reg[0].flags & ACCEL_MEM_REGION_CPU_VISIBLE))
		fail("region 0", "not CPU-visible");

	va = query(fd, ACCEL_QUERY_VA_RANGE, &size, "DEVICE_QUERY(VA_RANGE)");
	if (size < sizeof(*va))
		fail("DEVICE_QUERY(VA_RANGE)", "short result");
	printf("va: [%#" PRIx64 ", %#" PRIx64 "), page %#" PRIx64 "\n", (uint64_t)va->start, (uint64_t)va->end,
	       (uint64_t)va->min_page_size);

	/* The page size: the smallest one region 0 supports, at least 4 KiB. */
	uint64_t page = reg[0].page_sizes & -reg[0].page_sizes;
	if (page < COPY_BYTES)
		page = COPY_BYTES;
	if (va->min_page_size > page)
		page = va->min_page_size;
	const uint64_t data_size = 2 * page;
	const uint64_t va_src = va->start, va_dst = va->start + page;

	/* A negative check: a zero-sized BO is EINVAL. */
	struct accel_bo_create empty = { .size = 0, .region = reg[0].region_id, .flags = ACCEL_BO_CPU_VISIBLE };
	if (accel_ioctl(fd, ACCEL_IOCTL_BO_CREATE, &empty) == 0)
		fail("BO_CREATE(size 0)", "succeeded, expected EINVAL");
	if (errno != EINVAL)
		die("BO_CREATE(size 0) (expected EINVAL)");
	printf("BO_CREATE(size 0): %s, as expected\n", strerror(errno));

	/* A context with a two-page BO mapped at the start of its VA window. */
	struct accel_context_create ctx = { 0 };
	xioctl(fd, ACCEL_IOCTL_CONTEXT_CREATE, &ctx, "CONTEXT_CREATE");

	void *data_map;
	uint32_t data = bo_create_mapped(fd, reg[0].region_id, data_size, &data_map, "data");
	struct accel_vm_bind_op op = {
		.op = ACCEL_VM_BIND_OP_MAP,
		.flags = ACCEL_VM_BIND_READ | ACCEL_VM_BIND_WRITE,
		.handle = data,
		.bo_offset = 0,
		.va = va_src,
		.range = data_size,
	};
	struct accel_vm_bind bind = { .ctx_id = ctx.ctx_id, .num_ops = 1, .ops_ptr = (uint64_t)(uintptr_t)&op };
	xioctl(fd, ACCEL_IOCTL_VM_BIND, &bind, "VM_BIND");

	/* Fill the first 4 KiB with a pattern; the second page starts zeroed. */
	uint8_t *src = data_map, *dst = (uint8_t *)data_map + page;
	for (i = 0; i < COPY_BYTES; i++)
		src[i] = (uint8_t)(i * 7 + 3);
	for (i = 0; i < COPY_BYTES; i++)
		if (dst[i] != 0)
			fail("fresh BO", "not zero");

	/* The command stream, in a second CPU-visible BO. */
	void *cmd_map;
	uint32_t cmd = bo_create_mapped(fd, reg[0].region_id, page, &cmd_map, "commands");
	struct accel_cmd_copy copy = {
		.hdr = { .opcode = ACCEL_CMD_COPY, .flags = 0, .length = sizeof(struct accel_cmd_copy) },
		.src = va_src,
		.dst = va_dst,
		.size = COPY_BYTES,
	};
	memcpy(cmd_map, &copy, sizeof(copy));

	struct accel_queue_create queue = {
		.ctx_id = ctx.ctx_id,
		.engine_class = ACCEL_ENGINE_CLASS_COMPUTE,
		.priority = ACCEL_PRIORITY_NORMAL,
	};
	xioctl(fd, ACCEL_IOCTL_QUEUE_CREATE, &queue, "QUEUE_CREATE");

	struct accel_syncobj_create sync = { .flags = 0 };
	xioctl(fd, ACCEL_IOCTL_SYNCOBJ_CREATE, &sync, "SYNCOBJ_CREATE");

	/* Submit one portable chunk; the job's fence lands in the syncobj. */
	struct accel_chunk chunk = { .kind = ACCEL_CHUNK_PORTABLE, .handle = cmd, .offset = 0, .size = sizeof(copy) };
	struct accel_sync signal = { .handle = sync.handle, .flags = 0, .point = 0 };
	struct accel_submit submit = {
		.queue_id = queue.queue_id,
		.num_chunks = 1,
		.num_signals = 1,
		.chunks_ptr = (uint64_t)(uintptr_t)&chunk,
		.signals_ptr = (uint64_t)(uintptr_t)&signal,
	};
	xioctl(fd, ACCEL_IOCTL_SUBMIT, &submit, "SUBMIT");
	printf("submitted: queue %u, seqno %" PRIu64 "\n", queue.queue_id, (uint64_t)submit.seqno);

	/* Wait, with an absolute CLOCK_MONOTONIC deadline 5 s ahead. */
	struct timespec now;
	if (clock_gettime(CLOCK_MONOTONIC, &now) < 0)
		die("clock_gettime");
	uint32_t handle = sync.handle;
	struct accel_syncobj_wait wait = {
		.handles_ptr = (uint64_t)(uintptr_t)&handle,
		.timeout_ns = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec + 5 * (int64_t)1000000000,
		.count = 1,
		.flags = ACCEL_SYNCOBJ_WAIT_ALL | ACCEL_SYNCOBJ_WAIT_FOR_SUBMIT,
	};
	xioctl(fd, ACCEL_IOCTL_SYNCOBJ_WAIT, &wait, "SYNCOBJ_WAIT");

	/* Signalled is not successful: the fence status must be 0. */
	uint64_t point = 0;
	int32_t status = -1;
	struct accel_syncobj_query sq = {
		.handles_ptr = (uint64_t)(uintptr_t)&handle,
		.points_ptr = (uint64_t)(uintptr_t)&point,
		.status_ptr = (uint64_t)(uintptr_t)&status,
		.count = 1,
	};
	xioctl(fd, ACCEL_IOCTL_SYNCOBJ_QUERY, &sq, "SYNCOBJ_QUERY");
	if (point != 1)
		fail("SYNCOBJ_QUERY", "syncobj not signalled");
	if (status != 0) {
		errno = -status;
		die("the COPY job");
	}

	if (memcmp(src, dst, COPY_BYTES) != 0) {
		for (i = 0; i < COPY_BYTES && src[i] == dst[i]; i++)
			;
		fprintf(stderr, "accel-c-copy: compare failed: byte %u is %#04x, expected %#04x\n", i, dst[i], src[i]);
		return 1;
	}

	/* Tear down in dependency order; accel_close would release it all too. */
	struct accel_syncobj_destroy sd = { .handle = sync.handle };
	xioctl(fd, ACCEL_IOCTL_SYNCOBJ_DESTROY, &sd, "SYNCOBJ_DESTROY");
	struct accel_queue_destroy qd = { .queue_id = queue.queue_id };
	xioctl(fd, ACCEL_IOCTL_QUEUE_DESTROY, &qd, "QUEUE_DESTROY");
	struct accel_context_destroy cd = { .ctx_id = ctx.ctx_id };
	xioctl(fd, ACCEL_IOCTL_CONTEXT_DESTROY, &cd, "CONTEXT_DESTROY");
	if (accel_munmap(cmd_map, (size_t)page) < 0)
		die("accel_munmap (commands)");
	if (accel_munmap(data_map, (size_t)data_size) < 0)
		die("accel_munmap (data)");
	struct accel_bo_close bc = { .handle = cmd };
	xioctl(fd, ACCEL_IOCTL_BO_CLOSE, &bc, "BO_CLOSE (commands)");
	bc.handle = data;
	xioctl(fd, ACCEL_IOCTL_BO_CLOSE, &bc, "BO_CLOSE (data)");
	if (accel_close(fd) < 0)
		die("accel_close");
	if (accel_close(fd) == 0 || errno != EBADF)
		fail("accel_close (twice)", "expected EBADF");

	free(va);
	free(regs);
	free(info);
	printf("copy ok: %u bytes\n", COPY_BYTES);
	return 0;
}
