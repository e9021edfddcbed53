// Top-K label select: (L) values in PE lanes per word -> K indices, descending, ties -> lower
// index first; one index per output word.
//
// A sorted list of K (value, index) registers is updated by insertion, ONE element per cycle:
// an input word goes into a shift register and its PE lanes are inserted on PE consecutive
// cycles (the input is ready again when its last lane is being inserted, so PE = 1 takes a
// word every cycle). Why one element per cycle: inserting PE elements in one cycle is a chain
// of PE compare-and-shift levels (33 MHz at PE 5, K 3 on ECP5); one insertion is K parallel
// compares and a 2:1 mux per slot, whatever PE and K are. Elements arrive in index order, so an
// element displaces a slot only if it is strictly greater and equal values keep the earlier
// (lower) index in front with no index compare. After the frame's last element the list is
// emitted K words in a row from the head of a shift register, the input stalled meanwhile;
// then the list is cleared. All of it only on adv where it touches the output register.
//
// Cycles per frame: L + K (PE lanes are serialised; LabelSelect is never the bottleneck of a
// network, its L is the number of classes). Latency: the first index is in the output register
// PE + 2 cycles after the frame's last input word is accepted; the K-th K-1 cycles later.
module codesign_labelselect #(
    parameter integer L = 10,
    parameter integer PE = 1,
    parameter integer K = 1,
    parameter integer IBITS = 8,
    parameter integer OBITS = 4,
    parameter integer I_SIGNED = 0,
    parameter integer NW = L / PE
) (
    input  wire                 ap_clk,
    input  wire                 ap_rst_n,
    input  wire [PE*IBITS-1:0]  in0_V_TDATA,
    input  wire                 in0_V_TVALID,
    output wire                 in0_V_TREADY,
    output reg  [OBITS-1:0]     out_V_TDATA,
    output reg                  out_V_TVALID,
    input  wire                 out_V_TREADY
);
    localparam integer VB = IBITS + 1;
    localparam integer LB = (L > 1) ? $clog2(L) : 1;
    localparam integer XB = (LB > OBITS) ? LB : OBITS;
    localparam integer LW = (PE > 1) ? $clog2(PE) : 1;

    reg signed [VB-1:0] val [0:K-1];
    reg [XB-1:0] idx [0:K-1];
    reg [K-1:0] occ;
    reg [PE*IBITS-1:0] sh;   // lanes of the word being inserted, lane 0 at the bottom
    reg have;                // sh holds lanes still to insert
    reg [LW-1:0] lane;       // index of the lane at the bottom of sh
    reg [XB-1:0] ei;         // index of the element at the bottom of sh
    reg [15:0] wcnt;         // input words taken in this frame
    reg taken_all;           // the frame's last word has been taken
    reg [15:0] ocnt;         // output words emitted
    reg emitting;

    wire adv = !out_V_TVALID || out_V_TREADY;
    wire last_lane = (lane == PE - 1);
    assign in0_V_TREADY = !emitting && !taken_all && (!have || last_lane);
    wire in_fire = in0_V_TREADY && in0_V_TVALID;

    // one insertion per cycle: K parallel compares, one 2:1 choice per slot
    wire signed [VB-1:0] ev = (I_SIGNED != 0) ? {sh[IBITS-1], sh[IBITS-1:0]} : {1'b0, sh[IBITS-1:0]};
    reg [K-1:0] gt;
    integer j;
    always @* begin
        for (j = 0; j < K; j = j + 1) gt[j] = !occ[j] || (ev > val[j]);
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            occ <= 0; have <= 1'b0; lane <= 0; ei <= 0; wcnt <= 0; taken_all <= 1'b0;
            ocnt <= 0; emitting <= 1'b0;
            out_V_TVALID <= 1'b0;
        end else begin
            if (have) begin
                for (j = 0; j < K; j = j + 1) begin
                    if (gt[j]) begin
                        if (j > 0 && gt[(j > 0) ? j - 1 : 0]) begin
                            val[j] <= val[(j > 0) ? j - 1 : 0];
                            idx[j] <= idx[(j > 0) ? j - 1 : 0];
                        end else begin
                            val[j] <= ev;
                            idx[j] <= ei;
                        end
                    end
                end
                occ <= (occ << 1) | {{(K-1){1'b0}}, 1'b1} | occ;
                ei <= ei + 1'b1;
                sh <= sh >> IBITS;
                lane <= last_lane ? {LW{1'b0}} : lane + 1'b1;
                if (last_lane) begin
                    have <= 1'b0;
                    if (taken_all) begin
                        taken_all <= 1'b0;
                        emitting <= 1'b1;
                    end
                end
            end
            if (in_fire) begin
                sh <= in0_V_TDATA;
                have <= 1'b1;
                if (wcnt == NW - 1) begin
                    wcnt <= 0;
                    taken_all <= 1'b1;
                end else begin
                    wcnt <= wcnt + 1'b1;
                end
            end
            if (adv) begin
                out_V_TVALID <= emitting;
                if (emitting) begin
                    out_V_TDATA <= idx[0][OBITS-1:0];
                    for (j = 0; j + 1 < K; j = j + 1) idx[j] <= idx[j + 1];
                    if (ocnt == K - 1) begin
                        ocnt <= 0;
                        emitting <= 1'b0;
                        occ <= 0;
                        ei <= 0;
                    end else begin
                        ocnt <= ocnt + 1'b1;
                    end
                end
            end
        end
    end
endmodule
