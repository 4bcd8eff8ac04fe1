/*
 * cupti_trace.cpp - a timeline of a process's CUDA kernels, for the decode graph that Nsight Compute (kernels one at a
 * time) cannot show and no Nsight Systems on the GPU machine would: loaded by the CUDA driver into any process
 * (CUDA_INJECTION64_PATH=build/libcupti_trace.so), it records every kernel's start and end through CUPTI's activity
 * API and, at exit, writes a summary to $LB_TRACE_OUT (default stderr):
 *   - the steps: kernels of one graph launch (one decoded token) share a correlation id; per step the span (first
 *     start to last end), the time some kernel ran (the union of the kernels' intervals) and the rest (no kernel
 *     running: launch latency, dependency waits), medians over the steps;
 *   - per kernel name, by its critical time: launches, total and mean time (first block's start to last block's end:
 *     under programmatic dependent launch this includes the wait for the kernel before), share of the steps' span,
 *     and the critical time: how far the kernel moved the step's latest end, per step (the critical times add up to
 *     the span: each kernel's part of it);
 *   - the gaps between consecutive kernels of a step (next start - previous end; negative where programmatic dependent
 *     launch started the next kernel's blocks before the previous ended), per (previous, next) pair.
 * LB_TRACE_ALL=1 takes every kernel, not only those launched from graphs. A bench tool, not part of lowbit: it needs
 * libcupti (the CUDA toolkit's) at run time; the timestamps cost the kernels time (a Q4_K_M decode 8 % slower traced,
 * run 29), so totals read above an untraced run.
 */
#include <cupti.h>
#include <cxxabi.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Rec {
    uint64_t start, end;
    uint32_t corr, graph;
    const char *name; /* CUPTI's, shared by the records of one kernel and kept for the process */
};

std::mutex mu;
std::vector<Rec> recs;
bool all_kernels = false;

const size_t BUF = 8u << 20;

void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records) {
    *buffer = (uint8_t *)aligned_alloc(8, BUF);
    *size = *buffer ? BUF : 0;
    *max_records = 0;
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t *buffer, size_t, size_t valid) {
    CUpti_Activity *r = NULL;
    std::lock_guard<std::mutex> lock(mu);
    while (cuptiActivityGetNextRecord(buffer, valid, &r) == CUPTI_SUCCESS) {
        if (r->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && r->kind != CUPTI_ACTIVITY_KIND_KERNEL) continue;
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)r;
        if (!all_kernels && k->graphId == 0) continue;
        recs.push_back(Rec{k->start, k->end, k->correlationId, k->graphId, k->name});
    }
    free(buffer);
}

/* the kernel's demangled name without its parameter list */
std::string short_name(const char *mangled) {
    if (!mangled) return "?";
    int st = 0;
    char *d = abi::__cxa_demangle(mangled, NULL, NULL, &st);
    std::string s = st == 0 && d ? d : mangled;
    free(d);
    if (s.compare(0, 5, "void ") == 0) s = s.substr(5);
    int depth = 0;
    for (size_t i = 0; i < s.size(); i++) { /* the first '(' outside template arguments */
        if (s[i] == '<') depth++;
        else if (s[i] == '>') depth--;
        else if (s[i] == '(' && depth == 0) return s.substr(0, i);
    }
    return s;
}

double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Agg {
    long n = 0;
    double total = 0.0, adv = 0.0; /* adv: how far the kernel moved the step's latest end (its share of the span) */
};

void report() {
    cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
    std::lock_guard<std::mutex> lock(mu);
    const char *path = getenv("LB_TRACE_OUT");
    FILE *f = path && *path ? fopen(path, "w") : stderr;
    if (!f) f = stderr;
    std::sort(recs.begin(), recs.end(), [](const Rec &a, const Rec &b) { return a.start < b.start; });
    std::map<const char *, std::string> names;
    for (const Rec &r : recs)
        if (!names.count(r.name)) names[r.name] = short_name(r.name);
    /* steps: records grouped by correlation id, in start order */
    std::map<uint32_t, std::vector<const Rec *>> steps;
    for (const Rec &r : recs) steps[r.corr].push_back(&r);
    std::vector<double> span, busy, idle, count;
    std::map<std::string, Agg> per_kernel;
    std::map<std::pair<std::string, std::string>, Agg> gaps;
    double span_total = 0.0;
    for (auto &kv : steps) {
        const std::vector<const Rec *> &v = kv.second;
        uint64_t s0 = v.front()->start, e0 = 0, cur_s = 0, cur_e = 0, e_prev = s0;
        double b = 0.0;
        for (size_t i = 0; i < v.size(); i++) {
            const Rec &r = *v[i];
            e0 = std::max(e0, r.end);
            if (i == 0 || r.start > cur_e) { /* a new busy interval */
                if (i) b += (double)(cur_e - cur_s);
                cur_s = r.start;
                cur_e = r.end;
            } else cur_e = std::max(cur_e, r.end);
            Agg &a = per_kernel[names[r.name]];
            a.n++;
            a.total += (double)(r.end - r.start);
            a.adv += (double)(std::max(r.end, e_prev) - e_prev);
            e_prev = std::max(e_prev, r.end);
            if (i) {
                Agg &g = gaps[{names[v[i - 1]->name], names[r.name]}];
                g.n++;
                g.total += (double)r.start - (double)v[i - 1]->end;
            }
        }
        b += (double)(cur_e - cur_s);
        span.push_back((double)(e0 - s0) * 1e-3);
        busy.push_back(b * 1e-3);
        idle.push_back((double)(e0 - s0) * 1e-3 - b * 1e-3);
        count.push_back((double)v.size());
        span_total += (double)(e0 - s0);
    }
    fprintf(f, "cupti_trace: %zu kernels in %zu steps (%s)\n", recs.size(), steps.size(),
            all_kernels ? "every kernel; a step = one correlation id" : "graph launches; a step = one graph launch");
    fprintf(f, "median step: %.1f us span, %.1f us with a kernel running, %.1f us with none, %.0f kernels\n", median(span),
            median(busy), median(idle), median(count));
    std::vector<std::pair<std::string, Agg>> pk(per_kernel.begin(), per_kernel.end());
    std::sort(pk.begin(), pk.end(), [](const auto &a, const auto &b) { return a.second.adv > b.second.adv; });
    fprintf(f, "\nper kernel (total: from its first block's start to its last block's end, overlaps counted in each; "
               "critical: how far it moved the step's latest end, the part of the span it accounts for, per step):\n");
    fprintf(f, "%12s %8s %10s %7s %12s %8s  %s\n", "total us", "count", "mean us", "share", "critical us", "share", "kernel");
    const double nsteps = steps.empty() ? 1.0 : (double)steps.size();
    for (const auto &kv : pk)
        fprintf(f, "%12.1f %8ld %10.2f %6.1f%% %12.1f %7.1f%%  %s\n", kv.second.total * 1e-3, kv.second.n,
                kv.second.total * 1e-3 / (double)kv.second.n, span_total > 0 ? 100.0 * kv.second.total / span_total : 0.0,
                kv.second.adv * 1e-3 / nsteps, span_total > 0 ? 100.0 * kv.second.adv / span_total : 0.0, kv.first.c_str());
    std::vector<std::pair<std::pair<std::string, std::string>, Agg>> pg(gaps.begin(), gaps.end());
    std::sort(pg.begin(), pg.end(), [](const auto &a, const auto &b) { return a.second.total > b.second.total; });
    fprintf(f, "\ngaps within a step (next kernel's start - previous kernel's end; negative: they overlapped):\n");
    fprintf(f, "%12s %8s %10s  %s\n", "total us", "count", "mean us", "previous -> next");
    for (const auto &kv : pg)
        fprintf(f, "%12.1f %8ld %10.2f  %s -> %s\n", kv.second.total * 1e-3, kv.second.n, kv.second.total * 1e-3 / (double)kv.second.n,
                kv.first.first.c_str(), kv.first.second.c_str());
    if (f != stderr) fclose(f);
}

} // namespace

/* called by the CUDA driver when it loads the library (CUDA_INJECTION64_PATH) */
extern "C" __attribute__((visibility("default"))) int InitializeInjection(void) {
    const char *a = getenv("LB_TRACE_ALL");
    all_kernels = a && a[0] == '1';
    if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
        fprintf(stderr, "cupti_trace: CUPTI's activity API is not available; no trace\n");
        return 1;
    }
    atexit(report);
    return 1;
}
