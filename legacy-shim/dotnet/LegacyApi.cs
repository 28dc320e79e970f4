// LegacyApi.cs: the legacy assessment component as .NET: the managed facade
// Amira.Legacy.ApiWrapper over the unmanaged C++ core (libassessment_core.so,
// ../core/assessment_core.cpp), implementing every function of
// ../../include/legacy_assessment.h for a host that loads it through hostfxr
// (the Rust bridge, src/legacy/clr.rs).
//
// Ownership at every crossing, stated beside the code that does it:
//   * Handles given to the caller (la_engine *, la_result *) are opaque ids
//     (never addresses): a release looks the id up in the registry first, so
//     a double or foreign release is detected without touching memory, counted
//     as a violation and answered LA_ERR_UNKNOWN_HANDLE.
//   * A result's entries and id bytes live in unmanaged memory
//     (Marshal.AllocHGlobal) owned by the result: the pointers la_result_get
//     hands out stay valid, unmoved by the GC, until la_result_free.
//   * The core's engine is a SafeHandle (CoreEngine): released exactly once,
//     when the managed engine is closed, or by its finalizer if it never is.
//   * No P/Invoke returns a string: text crosses as bytes into buffers the
//     receiving side owns (the core's messages into a managed byte[] pinned
//     for the call; ours into the caller's buffer in la_last_error_message).
//     A `string` return would make the marshaller free native-owned memory:
//     the seed's "double free or corruption".
//   * Every exported entry point catches every exception: one escaping into
//     the host would abort its process. A managed failure is LA_ERR_INTERNAL.
//
// Compiled with mcs (C# 7, no SDK needed): see ../Makefile.

using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Amira.Legacy
{
    // ------------------------------------------------------------ the ABI's types

    [StructLayout(LayoutKind.Sequential)]
    public struct StudentContext
    {
        public int Grade;
        public double ReadingLevel;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct AssessmentRow
    {
        public IntPtr Id; // BORROWED for the call: UTF-8, NUL-terminated
        public int AssessmentType;
        public long AdministeredAtUnixMs;
        public double RawScore;
        public int ItemsAttempted;
        public int ItemsCorrect;
        public int DurationSeconds;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct ScoredAssessment
    {
        public IntPtr Id; // BORROWED FROM THE RESULT: its unmanaged id block
        public UIntPtr IdLen;
        public double ScaledScore;
        public double Percentile;
        public int Band;
        public int HasWcpm;
        public double Wcpm;
        public double Accuracy;
        public uint Flags;
    }

    [StructLayout(LayoutKind.Sequential)]
    public struct Stats
    {
        public ulong EnginesOpened;
        public ulong EnginesClosed;
        public ulong ResultsOpened;
        public ulong ResultsClosed;
        public ulong ScoreCalls;
        public ulong Violations;
    }

    static class Status
    {
        public const int Ok = 0, InvalidArgument = 1, Config = 2, Scoring = 3, UnknownHandle = 4,
            OutOfRange = 5, Internal = 6;
    }

    // ------------------------------------------------------------ the unmanaged core

    /// The core's engine: owned by one managed Engine, released exactly once.
    sealed class CoreEngine : SafeHandle
    {
        public CoreEngine() : base(IntPtr.Zero, true) { }
        public override bool IsInvalid { get { return handle == IntPtr.Zero; } }
        protected override bool ReleaseHandle()
        {
            Core.core_engine_close(handle);
            return true;
        }
    }

    static class Core
    {
        const string Lib = "assessment_core";

        // Returns an engine the caller owns (the SafeHandle takes it).
        [DllImport(Lib)] internal static extern CoreEngine core_engine_open();
        // Takes back an engine from core_engine_open; called only by CoreEngine.
        [DllImport(Lib)] internal static extern void core_engine_close(IntPtr engine);
        // Validates and scores: reads `rows` (borrowed), writes `count` entries
        // into `output` (caller-owned) without ids; on failure writes a
        // NUL-terminated message into `message` (caller-owned, `capacity` bytes).
        [DllImport(Lib)]
        internal static extern unsafe int core_score(CoreEngine engine, StudentContext* context,
            AssessmentRow* rows, UIntPtr count, ScoredAssessment* output, byte* message,
            UIntPtr capacity);
        // Fault injection: a real invalid write; abort(); a leak of `kib` KiB.
        [DllImport(Lib)] internal static extern void core_crash_segv();
        [DllImport(Lib)] internal static extern void core_crash_abort();
        [DllImport(Lib)] internal static extern void core_leak(ulong kib);
    }

    // ------------------------------------------------------------ configuration

    sealed class Config
    {
        public ulong FailEvery, Seed = 1, DelayMs, CrashEvery = 1, LeakKib;
        public double FailProb;
        public string Malformed = "", Crash = "", CrashFlag = "", OpenFailFlag = "", Throw = "";
        public ulong ThrowEvery = 1;

        // The grammar of the C++ mock's config string ("key=value;..."), plus
        // throw=managed (an exception inside la_score, caught at the boundary)
        // and crash=unhandled (an exception that escapes on a thread of ours).
        public static int Parse(string text, out Config config)
        {
            config = new Config();
            foreach (string pair in text.Split(';'))
            {
                if (pair.Length == 0) continue;
                int eq = pair.IndexOf('=');
                if (eq < 0)
                    return ApiWrapper.Fail(Status.Config, "config entry '" + Cut(pair) + "' is not key=value");
                string key = pair.Substring(0, eq), value = pair.Substring(eq + 1);
                bool ok = true;
                switch (key)
                {
                    case "fail_every": ok = ulong.TryParse(value, out config.FailEvery); break;
                    case "seed": ok = ulong.TryParse(value, out config.Seed); break;
                    case "delay_ms": ok = ulong.TryParse(value, out config.DelayMs) && config.DelayMs <= 600000; break;
                    case "fail_prob":
                        ok = double.TryParse(value, System.Globalization.NumberStyles.Float,
                            System.Globalization.CultureInfo.InvariantCulture, out config.FailProb)
                            && config.FailProb >= 0 && config.FailProb <= 1;
                        break;
                    case "malformed":
                        ok = Array.IndexOf(new[] { "nan", "utf8", "id_len", "count", "range" }, value) >= 0;
                        config.Malformed = value;
                        break;
                    case "crash":
                        ok = Array.IndexOf(new[] { "segv", "abort", "unhandled" }, value) >= 0;
                        config.Crash = value;
                        break;
                    case "crash_every": ok = ulong.TryParse(value, out config.CrashEvery) && config.CrashEvery > 0; break;
                    case "leak_kib": ok = ulong.TryParse(value, out config.LeakKib) && config.LeakKib <= 1024 * 1024; break;
                    case "crash_flag": ok = value.Length > 0; config.CrashFlag = value; break;
                    case "open_fail_flag": ok = value.Length > 0; config.OpenFailFlag = value; break;
                    case "throw": ok = value == "managed"; config.Throw = value; break;
                    case "throw_every": ok = ulong.TryParse(value, out config.ThrowEvery) && config.ThrowEvery > 0; break;
                    default:
                        return ApiWrapper.Fail(Status.Config, "unknown config key '" + Cut(key) + "'");
                }
                if (!ok)
                    return ApiWrapper.Fail(Status.Config,
                        "invalid value '" + Cut(value) + "' for config key '" + key + "'");
            }
            return Status.Ok;
        }

        static string Cut(string s) { return s.Length > 40 ? s.Substring(0, 40) : s; }
    }

    // ------------------------------------------------------------ handles

    sealed class Engine
    {
        public Config Config;
        public CoreEngine Core;
        public long Calls;
        public readonly object RngLock = new object();
        public Random Rng;
    }

    /// A scored result: `Count` entries and their id bytes, in unmanaged memory
    /// this object owns until Free (la_result_free).
    sealed class Result
    {
        public IntPtr Entries; // Count * sizeof(ScoredAssessment), AllocHGlobal
        public IntPtr Ids;     // every id's bytes back to back, AllocHGlobal
        public int Count;
        public bool AbsurdCount;
        public bool ForcedIdLen;

        public void Free()
        {
            if (Entries != IntPtr.Zero) Marshal.FreeHGlobal(Entries);
            if (Ids != IntPtr.Zero) Marshal.FreeHGlobal(Ids);
            Entries = IntPtr.Zero;
            Ids = IntPtr.Zero;
        }
    }

    /// Live handles of one kind: opaque ids (never reused, never addresses) to
    /// their objects. Used under Registry's lock.
    sealed class HandleTable<T> where T : class
    {
        readonly Dictionary<long, T> live = new Dictionary<long, T>();

        public void Add(long id, T item) { live.Add(id, item); }

        public T Find(IntPtr handle)
        {
            T item;
            return live.TryGetValue(handle.ToInt64(), out item) ? item : null;
        }

        /// The object, no longer live; null for an unknown or released handle.
        public T Remove(IntPtr handle)
        {
            T item = Find(handle);
            if (item != null) live.Remove(handle.ToInt64());
            return item;
        }
    }

    /// The live handles and the counters, behind one lock.
    static class Registry
    {
        static readonly object Lock = new object();
        static readonly HandleTable<Engine> Engines = new HandleTable<Engine>();
        static readonly HandleTable<Result> Results = new HandleTable<Result>();
        static long next;
        static Stats stats = new Stats();

        static IntPtr Add<T>(HandleTable<T> table, T item) where T : class
        {
            long id = ++next;
            table.Add(id, item);
            return new IntPtr(id);
        }

        public static IntPtr AddEngine(Engine e) { lock (Lock) { stats.EnginesOpened++; return Add(Engines, e); } }
        public static IntPtr AddResult(Result r) { lock (Lock) { stats.ResultsOpened++; return Add(Results, r); } }
        public static Engine FindEngine(IntPtr handle) { lock (Lock) { return Engines.Find(handle); } }
        public static Result FindResult(IntPtr handle) { lock (Lock) { return Results.Find(handle); } }

        // A release of an unknown or already-released handle is a violation: counted, nothing touched.
        public static Engine RemoveEngine(IntPtr handle)
        {
            lock (Lock)
            {
                Engine e = Engines.Remove(handle);
                if (e == null) stats.Violations++; else stats.EnginesClosed++;
                return e;
            }
        }

        public static Result RemoveResult(IntPtr handle)
        {
            lock (Lock)
            {
                Result r = Results.Remove(handle);
                if (r == null) stats.Violations++; else stats.ResultsClosed++;
                return r;
            }
        }

        public static void CountScoreCall() { lock (Lock) { stats.ScoreCalls++; } }
        public static Stats Snapshot() { lock (Lock) { return stats; } }
    }

    // ------------------------------------------------------------ the facade

    /// The component's API, in the shape of the seed's Amira.Legacy.ApiWrapper.
    public static unsafe class ApiWrapper
    {
        public const uint AbiVersion = 1;
        const int MaxRows = 10000;

        [ThreadStatic] static byte[] lastError;
        [ThreadStatic] static int lastErrorLen;

        internal static int Fail(int status, string message)
        {
            byte[] bytes = Encoding.UTF8.GetBytes(message);
            if (lastError == null) lastError = new byte[512];
            int n = Math.Min(bytes.Length, lastError.Length - 1);
            Buffer.BlockCopy(bytes, 0, lastError, 0, n);
            lastErrorLen = bytes.Length;
            return status;
        }

        internal static int LastErrorMessage(byte* buf, ulong capacity)
        {
            if (buf != null && capacity > 0)
            {
                int stored = lastError == null ? 0 : Math.Min(lastErrorLen, lastError.Length - 1);
                int n = (int)Math.Min((ulong)stored, capacity - 1);
                for (int i = 0; i < n; i++) buf[i] = lastError[i];
                buf[n] = 0;
            }
            return lastErrorLen;
        }

        internal static int Open(byte* config, IntPtr* outEngine)
        {
            if (config == null) return Fail(Status.InvalidArgument, "config is NULL");
            if (outEngine == null) return Fail(Status.InvalidArgument, "out_engine is NULL");
            string text = Marshal.PtrToStringUTF8(new IntPtr(config));
            Config cfg;
            int status = Config.Parse(text, out cfg);
            if (status != Status.Ok) return status;
            if (cfg.OpenFailFlag.Length > 0 && File.Exists(cfg.OpenFailFlag))
                return Fail(Status.Config, "the engine cannot open while " + cfg.OpenFailFlag + " exists");
            CoreEngine core = Core.core_engine_open();
            if (core.IsInvalid) return Fail(Status.Internal, "the core could not open an engine");
            var engine = new Engine { Config = cfg, Core = core, Rng = new Random((int)(cfg.Seed & 0x7fffffff)) };
            *outEngine = Registry.AddEngine(engine);
            return Status.Ok;
        }

        internal static int Close(IntPtr handle)
        {
            Engine engine = Registry.RemoveEngine(handle);
            if (engine == null)
                return Fail(Status.UnknownHandle, "la_engine_close: engine " + handle.ToInt64() + " is not open");
            engine.Core.Dispose(); // the core's engine, released exactly once
            return Status.Ok;
        }

        internal static int Score(IntPtr handle, StudentContext* context, AssessmentRow* rows,
            ulong rowCount, IntPtr* outResult)
        {
            Engine engine = Registry.FindEngine(handle);
            if (engine == null) return Fail(Status.InvalidArgument, "engine is not open");
            if (context == null) return Fail(Status.InvalidArgument, "context is NULL");
            if (outResult == null) return Fail(Status.InvalidArgument, "out_result is NULL");
            if (rowCount > 0 && rows == null) return Fail(Status.InvalidArgument, "rows is NULL");
            if (rowCount > MaxRows)
                return Fail(Status.InvalidArgument, "row_count " + rowCount + " exceeds " + MaxRows);
            int count = (int)rowCount;

            // Scalars straight into the result's unmanaged entries; the core
            // validates the context and rows first (its messages, as the mock's).
            var result = new Result { Count = count };
            int size = Marshal.SizeOf(typeof(ScoredAssessment));
            result.Entries = Marshal.AllocHGlobal(Math.Max(1, count) * size);
            bool handedOut = false;
            try
            {
                byte[] message = new byte[512];
                int status;
                fixed (byte* m = message)
                {
                    status = Core.core_score(engine.Core, context, rows, new UIntPtr(rowCount),
                        (ScoredAssessment*)result.Entries, m, new UIntPtr((ulong)message.Length));
                }
                if (status != Status.Ok)
                {
                    int len = Array.IndexOf(message, (byte)0);
                    return Fail(status, Encoding.UTF8.GetString(message, 0, len < 0 ? message.Length : len));
                }

                Config cfg = engine.Config;
                long call = Interlocked.Increment(ref engine.Calls);
                Registry.CountScoreCall();
                InjectFaults(engine, cfg, call);
                if (cfg.DelayMs > 0) Thread.Sleep((int)cfg.DelayMs);
                if (cfg.FailEvery > 0 && (ulong)call % cfg.FailEvery == 0)
                    return Fail(Status.Scoring, "injected scoring failure (call " + call + ", every " + cfg.FailEvery + ")");
                if (cfg.FailProb > 0)
                {
                    double draw;
                    lock (engine.RngLock) draw = engine.Rng.NextDouble();
                    if (draw < cfg.FailProb)
                        return Fail(Status.Scoring, "injected scoring failure (probability " + cfg.FailProb.ToString("0.000") + ")");
                }

                CopyIds(result, rows, count);
                Malform(cfg.Malformed, result);
                *outResult = Registry.AddResult(result);
                handedOut = true;
                return Status.Ok;
            }
            finally
            {
                // Not handed out (an error, or an exception on its way to the
                // boundary): its memory goes now, once.
                if (!handedOut) result.Free();
            }
        }

        static void InjectFaults(Engine engine, Config cfg, long call)
        {
            if (cfg.LeakKib > 0) Core.core_leak(cfg.LeakKib);
            if (cfg.Throw == "managed" && (ulong)call % cfg.ThrowEvery == 0)
                throw new InvalidOperationException("injected managed exception (call " + call + ")");
            bool crashNow = cfg.Crash.Length > 0 && (ulong)call % cfg.CrashEvery == 0;
            if (crashNow && cfg.CrashFlag.Length > 0) crashNow = File.Exists(cfg.CrashFlag);
            if (!crashNow) return;
            switch (cfg.Crash)
            {
                case "segv": Core.core_crash_segv(); break;
                case "abort": Core.core_crash_abort(); break;
                case "unhandled":
                    // An exception no one catches, on a thread of ours: .NET ends
                    // the process, as the seed's escaping exceptions did.
                    var thread = new Thread(() => { throw new InvalidOperationException("injected unhandled exception"); });
                    thread.Start();
                    thread.Join();
                    break;
            }
        }

        // Every row's id bytes into one unmanaged block the result owns.
        static void CopyIds(Result result, AssessmentRow* rows, int count)
        {
            var lengths = new int[count];
            long total = 0;
            for (int i = 0; i < count; i++)
            {
                byte* id = (byte*)rows[i].Id;
                int n = 0;
                while (id[n] != 0) n++; // validated by the core: 1..64 bytes, NUL-terminated
                lengths[i] = n;
                total += n;
            }
            result.Ids = Marshal.AllocHGlobal((IntPtr)Math.Max(1, total));
            var entries = (ScoredAssessment*)result.Entries;
            byte* at = (byte*)result.Ids;
            for (int i = 0; i < count; i++)
            {
                Buffer.MemoryCopy((void*)rows[i].Id, at, lengths[i], lengths[i]);
                entries[i].Id = (IntPtr)at;
                entries[i].IdLen = new UIntPtr((ulong)lengths[i]);
                at += lengths[i];
            }
        }

        static void Malform(string mode, Result result)
        {
            if (mode.Length == 0) return;
            if (result.Count == 0) { result.AbsurdCount = mode == "count"; return; }
            var first = (ScoredAssessment*)result.Entries;
            switch (mode)
            {
                case "nan": first->ScaledScore = double.NaN; break;
                case "utf8":
                    // Bytes that are not UTF-8, within the first id's block.
                    byte* id = (byte*)first->Id;
                    id[0] = 0xff;
                    if ((ulong)first->IdLen > 1) id[1] = 0xfe;
                    break;
                case "id_len": result.ForcedIdLen = true; break;
                case "count": result.AbsurdCount = true; break;
                case "range": first->Percentile = 250.0; break;
            }
        }

        internal static ulong ResultCount(IntPtr handle)
        {
            Result result = Registry.FindResult(handle);
            if (result == null) return 0;
            if (result.AbsurdCount) return 1UL << 40;
            return (ulong)result.Count;
        }

        internal static int ResultGet(IntPtr handle, ulong index, ScoredAssessment* output)
        {
            Result result = Registry.FindResult(handle);
            if (result == null) return Fail(Status.InvalidArgument, "result is not live");
            if (output == null) return Fail(Status.InvalidArgument, "out is NULL");
            if (index >= (ulong)result.Count)
                return Fail(Status.OutOfRange, "index " + index + " is past the " + result.Count + " entries");
            *output = ((ScoredAssessment*)result.Entries)[index];
            if (index == 0 && result.ForcedIdLen) output->IdLen = new UIntPtr(ulong.MaxValue / 2);
            return Status.Ok;
        }

        internal static int ResultFree(IntPtr handle)
        {
            Result result = Registry.RemoveResult(handle);
            if (result == null)
                return Fail(Status.UnknownHandle, "la_result_free: result " + handle.ToInt64() + " is not live");
            result.Free();
            return Status.Ok;
        }

        internal static int StatsGet(Stats* output)
        {
            if (output == null) return Fail(Status.InvalidArgument, "out is NULL");
            *output = Registry.Snapshot();
            return Status.Ok;
        }
    }

    // ------------------------------------------------------------ the exports

    /// The header's functions as the host gets them: from hostfxr
    /// (load_assembly_and_get_function_pointer with these delegate types), or,
    /// published with NativeAOT (LegacyApi.csproj), as the shared library's own
    /// exported symbols. Each catches every exception: none may cross into the host.
    public static unsafe class Exports
    {
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate uint AbiVersionFn();
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int EngineOpenFn(byte* config, IntPtr* outEngine);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int EngineCloseFn(IntPtr engine);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int ScoreFn(IntPtr engine, StudentContext* context, AssessmentRow* rows, UIntPtr rowCount, IntPtr* outResult);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate UIntPtr ResultCountFn(IntPtr result);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int ResultGetFn(IntPtr result, UIntPtr index, ScoredAssessment* output);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int ResultFreeFn(IntPtr result);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate UIntPtr LastErrorMessageFn(byte* buf, UIntPtr capacity);
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)] public delegate int StatsGetFn(Stats* output);

        static int Internal(Exception e)
        {
            return ApiWrapper.Fail(Status.Internal, "managed exception: " + e.GetType().Name + ": " + e.Message);
        }

#if NATIVEAOT
        [UnmanagedCallersOnly(EntryPoint = "la_abi_version")]
#endif
        public static uint la_abi_version() { return ApiWrapper.AbiVersion; }

#if NATIVEAOT
        [UnmanagedCallersOnly(EntryPoint = "la_engine_open")]
#endif
        public static int la_engine_open(byte* config, IntPtr* outEngine)
        {
            try { return ApiWrapper.Open(config, outEngine); } catch (Exception e) { return Internal(e); }
        }

#if NATIVEAOT
        [UnmanagedCallersOnly(EntryPoint = "la_engine_close")]
#endif
        public static int la_engine_close(IntPtr engine)
        {
            try { return ApiWrapper.Close(engine); } catch (Exception e) { return Internal(e); }
        }

#if NATIVEAOT
        [UnmanagedCallersOnly(EntryPoint = "la_score")]
#endif
        public static int la_score(IntPtr engine, StudentContext* context, AssessmentRow* rows, UIntPtr rowCount, IntPtr* outResult)
        {
            try { return ApiWrapper.Score(engine, context, rows, (ulong)rowCount, outResult); }
            catch (Exception e) { return Internal(e); }
        }

#if NATIVEAOT
        [UnmanagedCallersOnly(EntryPoint = "la_result_count")]
#endif
        public static UIntPtr la_result_count(IntPtr result)
        {
            try { return new UIntPtr(ApiWrapper.ResultCount(result)); } catch (Exception) { return UIntPtr.Zero; }
        }

#if NATIVEAOT
        [UnmanagedCallersOnly(EntryPoint = "la_result_get")]
#endif
        public static int la_result_get(IntPtr result, UIntPtr index, ScoredAssessment* output)
        {
            try { return ApiWrapper.ResultGet(result, (ulong)index, output); } catch (Exception e) { return Internal(e); }
        }

#if NATIVEAOT
        [UnmanagedCallersOnly(EntryPoint = "la_result_free")]
#endif
        public static int la_result_free(IntPtr result)
        {
            try { return ApiWrapper.ResultFree(result); } catch (Exception e) { return Internal(e); }
        }

#if NATIVEAOT
        [UnmanagedCallersOnly(EntryPoint = "la_last_error_message")]
#endif
        public static UIntPtr la_last_error_message(byte* buf, UIntPtr capacity)
        {
            try { return new UIntPtr((ulong)ApiWrapper.LastErrorMessage(buf, (ulong)capacity)); }
            catch (Exception) { return UIntPtr.Zero; }
        }

#if NATIVEAOT
        [UnmanagedCallersOnly(EntryPoint = "la_stats_get")]
#endif
        public static int la_stats_get(Stats* output)
        {
            try { return ApiWrapper.StatsGet(output); } catch (Exception e) { return Internal(e); }
        }
    }
}
