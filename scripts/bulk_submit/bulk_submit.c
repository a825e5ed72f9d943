/* A bulk producer, for scripts/bench_queue.py: submits background jobs with libgearman's task
 * API in batches: BATCH gearman_client_add_task_background calls, then one
 * gearman_client_run_tasks, which sends them all before it reads their JOB_CREATED packets
 * (one batch's jobs are in flight at once). Connects first (an echo), then reads a line on
 * stdin, so that several start together; prints "START END" (CLOCK_MONOTONIC seconds) of its
 * submitting, and fails unless every job was acknowledged.
 *
 * Build: cc -O2 -o bulk_submit bulk_submit.c -lgearman   (Debian: apt-get install libgearman-dev)
 * Usage: bulk_submit PORT FUNCTION FIRST COUNT BATCH
 */
#include <libgearman/gearman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long created;

static gearman_return_t on_created(gearman_task_st *task) {
    (void)task;
    created++;
    return GEARMAN_SUCCESS;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 6 || atol(argv[5]) < 1) {
        fprintf(stderr, "usage: bulk_submit PORT FUNCTION FIRST COUNT BATCH\n");
        return 2;
    }
    const char *function = argv[2];
    long first = atol(argv[3]), count = atol(argv[4]), batch = atol(argv[5]);
    gearman_client_st *client = gearman_client_create(NULL);
    if (client == NULL || gearman_client_add_server(client, "127.0.0.1", (in_port_t)atoi(argv[1])) != GEARMAN_SUCCESS) {
        fprintf(stderr, "cannot set up the client\n");
        return 1;
    }
    if (gearman_client_echo(client, "x", 1) != GEARMAN_SUCCESS) {
        fprintf(stderr, "cannot reach the job server: %s\n", gearman_client_error(client));
        return 1;
    }
    gearman_client_set_created_fn(client, on_created);
    char line[16];
    if (fgets(line, sizeof line, stdin) == NULL) {
        return 1;
    }
    double start = now();
    for (long sent = 0; sent < count;) {
        long n = count - sent < batch ? count - sent : batch;
        for (long i = 0; i < n; i++) {
            char payload[32];
            int size = snprintf(payload, sizeof payload, "job-%06ld", first + sent + i);
            gearman_return_t ret;
            if (gearman_client_add_task_background(client, NULL, NULL, function, NULL, payload, (size_t)size, &ret) == NULL) {
                fprintf(stderr, "add_task_background: %s\n", gearman_strerror(ret));
                return 1;
            }
        }
        gearman_return_t ret = gearman_client_run_tasks(client);
        if (ret != GEARMAN_SUCCESS) {
            fprintf(stderr, "run_tasks: %s\n", gearman_client_error(client));
            return 1;
        }
        gearman_client_task_free_all(client);
        sent += n;
    }
    double end = now();
    if (created != count) {
        fprintf(stderr, "only %ld of %ld jobs were acknowledged\n", created, count);
        return 1;
    }
    printf("%.6f %.6f\n", start, end);
    gearman_client_free(client);
    return 0;
}
