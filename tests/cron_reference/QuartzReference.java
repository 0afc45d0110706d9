/*
 * Writes quartz_reference.json: the next fire times that Quartz's own
 * org.quartz.CronExpression.getNextValidTimeAfter computes for every expression of
 * expressions.txt, in several time zones, from several start instants (many of them just
 * before a daylight-saving transition), plus Quartz's verdict (accepted or the error message)
 * for every expression of invalid.txt.
 *
 * Run from the repository root (needs Debian's libquartz2-java and a JDK 11+):
 *
 *   java -Duser.language=en -Duser.country=US -cp /usr/share/java/quartz2.jar \
 *       tests/cron_reference/QuartzReference.java tests/cron_reference
 *
 * The test suite only reads the JSON file; it needs no Java.
 */

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.ZonedDateTime;
import java.time.ZoneOffset;
import java.time.zone.ZoneOffsetTransition;
import java.time.zone.ZoneRulesProvider;
import java.util.ArrayList;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TimeZone;

import org.quartz.CronExpression;

public final class QuartzReference {

    static final int COUNT = 10;

    static final String[] ZONES = {
        "UTC", "Asia/Ho_Chi_Minh", "Europe/Berlin", "America/New_York",
        "Australia/Lord_Howe", "America/Sao_Paulo",
    };

    /** Start instants used in every zone. */
    static final String[] COMMON_STARTS = {"2026-01-15T10:20:30Z", "2024-02-28T23:59:59Z"};

    /** Years whose DST transitions give zone-specific start instants. */
    static final Map<String, int[]> TRANSITION_YEARS = new LinkedHashMap<>();

    static {
        // 2040 is past the end of the JDK's transition tables (2037): later transitions
        // come from a rule, and resolve wall times through other code.
        TRANSITION_YEARS.put("Europe/Berlin", new int[] {2026, 2040});
        TRANSITION_YEARS.put("America/New_York", new int[] {2026, 2040});
        TRANSITION_YEARS.put("Australia/Lord_Howe", new int[] {2026});
        TRANSITION_YEARS.put("America/Sao_Paulo", new int[] {2018});
    }

    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args.length > 0 ? args[0] : ".");
        List<String> valid = readList(dir.resolve("expressions.txt"));
        List<String> invalid = readList(dir.resolve("invalid.txt"));

        StringBuilder out = new StringBuilder();
        out.append("{\n");
        out.append("  \"generator\": \"tests/cron_reference/QuartzReference.java\",\n");
        out.append("  \"quartz\": ").append(quote(CronExpression.class.getPackage().getImplementationVersion() == null
                ? "2.3.2 (Debian libquartz2-java)" : CronExpression.class.getPackage().getImplementationVersion())).append(",\n");
        out.append("  \"java\": ").append(quote(System.getProperty("java.version"))).append(",\n");
        out.append("  \"tzdata\": ").append(quote(ZoneRulesProvider.getVersions("UTC").lastKey())).append(",\n");
        out.append("  \"count\": ").append(COUNT).append(",\n");
        // Quartz stops searching after this year (the current year + 100 when it ran).
        out.append("  \"quartz_max_year\": ").append(CronExpression.MAX_YEAR).append(",\n");

        out.append("  \"verdicts\": [\n");
        List<String> all = new ArrayList<>(valid);
        String section = "";
        List<String> sections = new ArrayList<>();
        for (int i = 0; i < valid.size(); i++) {
            sections.add("valid");
        }
        for (String line : invalid) {
            if (line.startsWith("[") && line.endsWith("]")) {
                section = line.substring(1, line.length() - 1);
                continue;
            }
            all.add(line);
            sections.add(section);
        }
        for (int i = 0; i < all.size(); i++) {
            String expr = all.get(i);
            String parseError = null;
            String nextError = null;
            try {
                CronExpression ce = new CronExpression(expr);
                ce.setTimeZone(TimeZone.getTimeZone("UTC"));
                try {
                    ce.getNextValidTimeAfter(Date.from(Instant.parse("2026-01-01T00:00:00Z")));
                } catch (Exception e) {
                    nextError = e.getClass().getSimpleName() + ": " + e.getMessage();
                }
            } catch (Exception e) {
                parseError = e.getClass().getSimpleName() + ": " + e.getMessage();
            }
            out.append("    {\"expression\": ").append(quote(expr))
                .append(", \"list\": ").append(quote(sections.get(i)))
                .append(", \"quartz_parse_error\": ")
                .append(parseError == null ? "null" : quote(parseError))
                .append(", \"quartz_next_error\": ")
                .append(nextError == null ? "null" : quote(nextError))
                .append(i + 1 < all.size() ? "},\n" : "}\n");
        }
        out.append("  ],\n");

        out.append("  \"cases\": [\n");
        boolean first = true;
        for (String expr : valid) {
            for (String zoneId : ZONES) {
                TimeZone zone = TimeZone.getTimeZone(zoneId);
                CronExpression ce = new CronExpression(expr);
                ce.setTimeZone(zone);
                for (Instant start : starts(zoneId)) {
                    List<String> fires = new ArrayList<>();
                    Date t = Date.from(start);
                    for (int n = 0; n < COUNT; n++) {
                        t = ce.getNextValidTimeAfter(t);
                        if (t == null) {
                            break;
                        }
                        fires.add(t.toInstant().toString());
                    }
                    out.append(first ? "" : ",\n");
                    first = false;
                    out.append("    {\"expression\": ").append(quote(expr))
                        .append(", \"zone\": ").append(quote(zoneId))
                        .append(", \"after\": ").append(quote(start.toString()))
                        .append(", \"next\": [");
                    for (int n = 0; n < fires.size(); n++) {
                        out.append(n == 0 ? "" : ", ").append(quote(fires.get(n)));
                    }
                    out.append("]}");
                }
            }
        }
        out.append("\n  ]\n}\n");
        Files.writeString(dir.resolve("quartz_reference.json"), out.toString(), StandardCharsets.UTF_8);
    }

    /** Common starts, then for each DST transition of the zone's chosen years: 2 h before it,
     *  30 min before it and 30 min after it (inside the repeated hour on a fall-back day). */
    static List<Instant> starts(String zoneId) {
        List<Instant> result = new ArrayList<>();
        for (String s : COMMON_STARTS) {
            result.add(Instant.parse(s));
        }
        int[] years = TRANSITION_YEARS.get(zoneId);
        if (years == null) {
            return result;
        }
        var rules = java.time.ZoneId.of(zoneId).getRules();
        for (int year : years) {
            Instant from = ZonedDateTime.of(year, 1, 1, 0, 0, 0, 0, ZoneOffset.UTC).toInstant();
            Instant to = ZonedDateTime.of(year + 1, 1, 1, 0, 0, 0, 0, ZoneOffset.UTC).toInstant();
            ZoneOffsetTransition tr = rules.nextTransition(from);
            while (tr != null && tr.getInstant().isBefore(to)) {
                Instant at = tr.getInstant();
                result.add(at.minusSeconds(7200));
                result.add(at.minusSeconds(1800));
                result.add(at.plusSeconds(1800));
                tr = rules.nextTransition(at);
            }
        }
        return result;
    }

    static List<String> readList(Path file) throws Exception {
        List<String> result = new ArrayList<>();
        for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
            if (line.isBlank() || line.startsWith("#")) {
                continue;
            }
            result.add(line);
        }
        return result;
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': b.append("\\\""); break;
                case '\\': b.append("\\\\"); break;
                case '\t': b.append("\\t"); break;
                case '\n': b.append("\\n"); break;
                default:
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
            }
        }
        return b.append('"').toString();
    }
}
