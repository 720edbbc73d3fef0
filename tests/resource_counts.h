/*
 * resource_counts.h - what a leak check counts in this process: entries of a
 * /proc directory (descriptors, threads) and shared mappings (ipc segments,
 * the process pools' arenas). Stress tests compare them before and after.
 */
#ifndef EXE_TESTS_RESOURCE_COUNTS_H
#define EXE_TESTS_RESOURCE_COUNTS_H

#include <dirent.h>
#include <stdio.h>

/* Entries of @path, or -1. For /proc/self/fd the count includes the
 * descriptor opendir() holds, the same every time. */
static inline int count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Shared mappings (rw-s): shared anonymous memory shows up as
 * "/dev/zero (deleted)" or "memfd:". -1 when /proc is not readable. */
static inline int count_shared_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	char line[512];
	int n = 0;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char perms[8] = "";

		if (sscanf(line, "%*s %7s", perms) == 1 && perms[3] == 's')
			n++;
	}
	fclose(f);
	return n;
}

#endif
