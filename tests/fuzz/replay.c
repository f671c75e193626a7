/* replay.c: runs a fuzz target over its committed corpus as a TAP test (no libFuzzer). */
#include "config.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs above this are not fuzz seeds; the limit keeps a stray file from eating memory. */
#define REPLAY_INPUT_MAX (1024 * 1024)

static int
replay_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	size_t n;

	if (f == NULL)
		return -1;
	buf = malloc(REPLAY_INPUT_MAX);
	if (buf == NULL) {
		fclose(f);
		return -1;
	}
	n = fread(buf, 1, REPLAY_INPUT_MAX, f);
	fclose(f);
	/* A copy of exactly n bytes lets ASan catch any read past the input. */
	uint8_t *exact = malloc(n == 0 ? 1 : n);
	if (exact == NULL) {
		free(buf);
		return -1;
	}
	memcpy(exact, buf, n);
	free(buf);
	LLVMFuzzerTestOneInput(exact, n);
	free(exact);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *base = getenv("FUZZ_CORPUS_DIR");
	const char *name = strrchr(argv[0], '/');
	char dir[4096], path[8192];
	struct dirent **ents;
	int n, tests = 0, failed = 0;

	(void)argc;
	name = name != NULL ? name + 1 : argv[0];
	if (strncmp(name, "fuzz_", 5) == 0)
		name += 5;
	if (base == NULL)
		base = "tests/fuzz/corpus";
	snprintf(dir, sizeof(dir), "%s/%s", base, name);
	n = scandir(dir, &ents, NULL, alphasort);
	if (n < 0) {
		printf("1..0 # SKIP no corpus at %s\n", dir);
		return 0;
	}
	for (int i = 0; i < n; i++)
		if (ents[i]->d_name[0] != '.')
			tests++;
	printf("1..%d\n", tests);
	tests = 0;
	for (int i = 0; i < n; i++) {
		if (ents[i]->d_name[0] != '.') {
			snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
			tests++;
			if (replay_file(path) == 0) {
				printf("ok %d - %s\n", tests, ents[i]->d_name);
			} else {
				printf("not ok %d - %s (unreadable)\n", tests, ents[i]->d_name);
				failed++;
			}
		}
		free(ents[i]);
	}
	free(ents);
	return failed == 0 ? 0 : 1;
}
