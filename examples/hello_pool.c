/*
 * hello_pool - the smallest complete use of libexecutor: submit squares to a
 * thread pool, collect them through futures, chain one with then().
 */
#include <executor.h>
#include <stdint.h>
#include <stdio.h>

static int square(void *arg, void **result)
{
	intptr_t x = (intptr_t)arg;

	*result = (void *)(x * x);
	return 0;
}

static int plus_one(struct exe_future *prev, void *arg, void **result)
{
	void *v;

	(void)arg;
	exe_future_result(prev, &v, 0);
	*result = (void *)((intptr_t)v + 1);
	return 0;
}

int main(void)
{
	struct exe_pool *pool;
	struct exe_future *fs[8], *next;
	intptr_t sum = 0;
	void *v;
	int rc;

	rc = exe_thread_pool_create(&pool, &(struct exe_pool_opts){.workers = 2, .name = "hello"});
	if (rc) {
		fprintf(stderr, "pool: %s\n", exe_strerror(rc));
		return 1;
	}
	for (intptr_t i = 0; i < 8; i++)
		exe_pool_submit(pool, square, (void *)i, &fs[i]);
	for (int i = 0; i < 8; i++) {
		exe_future_result(fs[i], &v, EXE_FOREVER);
		sum += (intptr_t)v;
	}
	exe_future_then(fs[7], pool, plus_one, NULL, &next);
	exe_future_result(next, &v, EXE_FOREVER);
	printf("sum of squares 0..7 = %ld, 7*7+1 = %ld\n", (long)sum, (long)(intptr_t)v);
	exe_future_unref(next);
	for (int i = 0; i < 8; i++)
		exe_future_unref(fs[i]);
	exe_pool_destroy(pool);
	return sum == 140 && (intptr_t)v == 50 ? 0 : 1;
}
