/*
 * executor.h - libexecutor: thread pools that return futures, for C.
 * The only header applications include.
 */
#ifndef EXECUTOR_H
#define EXECUTOR_H

#include <executor/common.h>
#include <executor/future.h>
#include <executor/pool.h>
#include <executor/io.h>
#include <executor/queue.h>
#include <executor/ipc.h>
#include <executor/process.h>
#include <executor/process_pool.h>
#include <executor/fiber.h>

#endif /* EXECUTOR_H */
