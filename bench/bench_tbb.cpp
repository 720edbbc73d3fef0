/*
 * bench_tbb - oneTBB's task_group next to libexecutor's thread pool, on the
 * same workloads and harness as bench_peers (bench/workloads.h). A separate
 * program because TBB is C++; the harness and the libexecutor reference are
 * the same C code, and libexecutor-threads runs in this process too, so the
 * ratio comes from the same run.
 *
 *   tbb-task-group  task_group::run() per task, then task_group::wait(). The
 *                   arena is TBB's default: one slot per online CPU, the
 *                   waiting thread included (it runs tasks while it waits),
 *                   so ncpu - 1 worker threads.
 *
 * --json prints only the tbb-task-group rows (each with vs_libexecutor), so
 * that the results file holds one libexecutor-threads row per workload: the
 * one from bench_peers. The table shows both.
 */
#include <tbb/task_group.h>

#include "workloads.h"

namespace {

struct tbb_slot {
	bench_result res;
};

void *tbb_create(unsigned)
{
	return new tbb::task_group;
}

void tbb_destroy(void *ctx)
{
	delete static_cast<tbb::task_group *>(ctx);
}

int tbb_batch(void *ctx, bench_task_fn *fn, void *arg, size_t n, void *slots)
{
	auto *tg = static_cast<tbb::task_group *>(ctx);
	auto *s = static_cast<tbb_slot *>(slots);

	for (size_t i = 0; i < n; i++)
		tg->run([fn, arg, r = &s[i].res] { r->code = fn(arg, &r->value); });
	tg->wait();
	return 0;
}

int tbb_one(void *ctx, bench_task_fn *fn, void *arg, int64_t *t_done)
{
	auto *tg = static_cast<tbb::task_group *>(ctx);
	bench_result r = { nullptr, 1 };

	tg->run([fn, arg, &r] { r.code = fn(arg, &r.value); });
	tg->wait();
	*t_done = bench_now_ns();
	return r.code;
}

long tbb_fib(int n)
{
	long a = 0, b = 0;
	tbb::task_group g;

	if (n < 2)
		return n;
	g.run([&] { a = tbb_fib(n - 1); });
	g.run([&] { b = tbb_fib(n - 2); });
	g.wait();
	return a + b;
}

long tbb_fork_join(void *, int n)
{
	return tbb_fib(n);
}

} // namespace

int main(int argc, char **argv)
{
	bench_system systems[2];

	bench_parse_args("bench_tbb", argc, argv);
	bench_json_reference = false;

	systems[0] = bench_libexecutor_threads;
	systems[1] = bench_system{};
	systems[1].name = "tbb-task-group";
	systems[1].slot_size = sizeof(tbb_slot);
	systems[1].create = tbb_create;
	systems[1].destroy = tbb_destroy;
	systems[1].batch = tbb_batch;
	systems[1].one = tbb_one;
	systems[1].fork_join = tbb_fork_join;
	bench_run("bench_tbb", systems, 2);
	return 0;
}
