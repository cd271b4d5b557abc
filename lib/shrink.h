/*
 * shrink.h — the shrinker layer: RECLAIMABLE caches the program registers
 * (shrink.c, the spb-shrink thread that runs them), for the process layer
 * (init.c). It calls the engine (its trigger hook, zone gauges, spb_trim),
 * the objects layer (flushing the frees a pass made) and pressure.c (the
 * memory-pressure sources its thread watches); nothing below calls up into
 * it except through spb__shrink_hook (engine.h) and spb__shrink_restart
 * (heap.h).
 */
#ifndef SPB_SHRINK_H
#define SPB_SHRINK_H

#include "engine.h"

/* ---- shrink.c ---- */
void spb__shrink_init(void) SPB_HIDDEN;
void spb__shrink_prefork(void) SPB_HIDDEN;
void spb__shrink_postfork(bool child) SPB_HIDDEN;

#endif
